"""The system under test, assembled from real processes in a temp dir: a Mosquitto on a
free loopback port, the cloud ingest (`python -m tools.cli ingest run`) with its SQLite
database, and the agent (`python -m agent run`) on the simulated cabinet (the example
config, boards/sim/cabinet.toml, with an [uplink] section added: the broker, the
cabinet's signing key, the ingest's public key, small fast batches).

While the parts run, `idle` looks at the agent's outbox every POLL_S, read-only, and
records every row it ever sees in the ledger (agent/outbox/schema.py: rows, points);
and watches the parts for exits the suite did not cause. `drain` waits, with every part
up, until every row seen is at the ingest (tools/ingest/store.py: `Store.readings`).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import config as cfg
from agent.wire import cose
from tools.chaos.disk import DiskUnavailable, SmallDisk
from tools.chaos.ledger import Fault, Ledger, Tally, stored_counts
from tools.chaos.procs import Broker, Crash, Part, tracebacks
from tools.ingest.store import Store
from tools.provision import pki

MAX_CRASHES = 20
POLL_S = 0.05  # how often the outbox is read; rows live there for at least a batch age
ROWS = "SELECT rows.id, points.name, rows.t FROM rows JOIN points ON points.id = rows.point"
TOP = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Knobs:
    """The uplink settings of the cabinet under test: small, fast batches and re-sends
    (the field defaults, 300 s and 60 s, would make each recovery minutes long)."""

    batch_max_age_s: float = 1.0
    ack_timeout_s: float = 3.0


def cabinet_config(example: str, *, port: int, signing_key: Path, ingest_key: str, knobs: Knobs, start: str) -> str:
    """The example cabinet with the simulated clock starting at `start` and an [uplink]."""
    if "\n[sim]\n" not in example:
        raise ValueError("the example config has no [sim] section")
    text = example.replace("\n[sim]\n", f'\n[sim]\nstart = "{start}"\n', 1)
    return text + (
        "\n[uplink]\n"
        'broker = "127.0.0.1"\n'
        f"port = {port}\n"
        "tls = false\n"
        f"signing_key = {json.dumps(str(signing_key))}\n"
        f'ingest_key = "{ingest_key}"\n'
        f"batch_max_age_s = {knobs.batch_max_age_s}\n"
        f"ack_timeout_s = {knobs.ack_timeout_s}\n"
    )


def is_wal(path: Path) -> bool:
    """Is the SQLite file in WAL mode (header bytes 18-19 = 2)? Until it is, a reader
    could make the agent's switch to WAL fail, so the suite does not look before."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 2


def outbox_evicted(path: Path) -> int:
    """Rows the outbox evicted over its life (schema: meta evicted_rows_<prio>)."""
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = con.execute("SELECT value FROM meta WHERE key LIKE 'evicted_rows_%'").fetchall()
        finally:
            con.close()
    except sqlite3.Error:  # no outbox made yet: nothing evicted
        return 0
    return sum(int(v) for (v,) in rows)


class Rig:
    def __init__(self, root: Path, knobs: Knobs | None = None, disk_mb: int = 0) -> None:
        self.root = root
        self.knobs = knobs or Knobs()
        self.logs = root / "logs"
        self.data = root / "cabinet"
        self.db = root / "ingest.db"
        self.config = root / "cabinet.toml"
        self.ledger = Ledger()
        self.crashes: list[Crash] = []
        self.faults: list[Fault] = []
        self.look_errors = 0
        self.example = cfg.EXAMPLE.read_text()
        self.cabinet = str(tomllib.loads(self.example)["cabinet"]["id"])
        self.parts: list[Part] = []  # in start order; stopped in reverse
        self.store: Store | None = None
        self.disk = SmallDisk(self.data, disk_mb) if disk_mb else None
        self.disk_error: str | None = None
        self.evicted = 0  # rows the outbox evicted by its policy (counted in its meta table), read at the end

    # setting up ----------------------------------------------------------------------
    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.disk is not None:
            self._mount(self.disk)
        ingest_key, signing_key = self.root / "ingest.key", self.root / "signing.key"
        ingest_pub = pki.new_signing_key(ingest_key).hex()
        pki.new_signing_key(signing_key)
        cab = pki.load_signing_key(signing_key).public_key()
        self.store = Store(str(self.db))
        self.store.add_key(self.cabinet, cose.key_id(cab), pki.public_key_raw(cab), time.time())
        self.broker = Broker(self.logs, TOP)
        self.parts.append(self.broker)
        self.address = f"127.0.0.1:{self.broker.port}"
        self._signing_key, self._ingest_pub = signing_key, ingest_pub
        self.write_config("now")
        py = sys.executable
        self.ingest = Part(
            "ingest",
            [py, "-m", "tools.cli", "ingest", "run", "--db", str(self.db), "--broker", self.address,
             "--key", str(ingest_key)],
            self.logs, cwd=TOP,
        )  # fmt: skip
        self.agent = Part(
            "agent",
            [py, "-m", "agent", "run", "--config", str(self.config), "--data-dir", str(self.data),
             "--broker", self.address],
            self.logs, cwd=TOP, group=True,
        )  # fmt: skip
        for part in (self.ingest, self.agent):
            part.start()
            self.parts.append(part)

    def _mount(self, disk: SmallDisk) -> None:
        """The agent's data dir on the small disk; the simulator's files (its stand-in
        hardware: pty links, pin files) stay on the real disk through a link."""
        try:
            disk.mount()
        except DiskUnavailable as e:
            self.disk, self.disk_error = None, str(e)
            return
        (self.root / "sim").mkdir()
        (self.data / "sim").symlink_to(self.root / "sim")

    def write_config(self, start: str) -> None:
        """The cabinet's config; `start` is its simulated clock's start ("now" or ISO 8601),
        read by the simulated cabinet when the agent starts it."""
        text = cabinet_config(
            self.example,
            port=self.broker.port,
            signing_key=self._signing_key,
            ingest_key=self._ingest_pub,
            knobs=self.knobs,
            start=start,
        )
        self.config.write_text(text)

    # watching ------------------------------------------------------------------------
    def look(self) -> None:
        """Record every row of the outbox as it is now (committed rows only: WAL readers)."""
        path = self.data / "outbox.db"
        if not is_wal(path):
            return
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            try:
                self.ledger.see(con.execute(ROWS).fetchall())
            finally:
                con.close()
        except sqlite3.Error:
            self.look_errors += 1  # e.g. busy during the agent's start: the next look sees it

    def check(self) -> None:
        """A part that ended by itself is a crash: record it and start the part again
        (up to MAX_CRASHES in a run: a part that cannot start at all ends the run)."""
        for part in self.parts:
            crash = part.check()
            if crash is not None:
                self.crashes.append(crash)
                if len(self.crashes) > MAX_CRASHES:
                    raise RuntimeError(
                        f"{len(self.crashes)} crashes, the last: {crash.part} {crash.what} ({crash.log})"
                    )
                part.start()

    def idle(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Look and watch for `seconds`, or until `until()` holds (then True)."""
        deadline = time.monotonic() + seconds
        while True:
            self.look()
            self.check()
            if until is not None and until():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    # what the ingest has -----------------------------------------------------------------
    def batch_times(self) -> list[float]:
        """When the ingest stored each of the cabinet's batches (its wall clock), ascending."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = con.execute("SELECT received_t FROM batches WHERE cabinet = ? ORDER BY received_t", (self.cabinet,))
            return [float(t) for (t,) in rows.fetchall()]
        finally:
            con.close()

    def stored(self) -> list[tuple[str, float]]:
        """(point, t) of every reading row of the cabinet at the ingest."""
        if self.store is None:
            return []
        return [(str(r[1]), float(r[2])) for r in self.store.readings(self.cabinet)]

    def wait_batch_after(self, t: float, timeout: float) -> bool:
        """Idle until the ingest stored a batch after wall time `t` (a recovered pipeline)."""
        return self.idle(timeout, lambda: self.batch_times()[-1:] > [t])

    def fault(self, kind: str, struck_t: float) -> None:
        self.faults.append(Fault(kind, struck_t, time.time()))

    # ending --------------------------------------------------------------------------------
    def drain(self, timeout: float) -> bool:
        """With every part up: one last look, then wait until every row seen is stored."""
        self.look()
        frozen = self.ledger
        next_check = 0.0

        def done() -> bool:
            nonlocal next_check
            if time.monotonic() < next_check:
                return False
            next_check = time.monotonic() + 0.5
            return frozen.missing(stored_counts(self.stored())) == 0

        self.ledger = Ledger()  # rows made from now on are not waited for
        try:
            return self.idle(timeout, done)
        finally:
            self.ledger = frozen

    def close(self) -> Tally:
        """Stop every part gracefully (each must exit 0), then compare, then collect tracebacks."""
        for part in reversed(self.parts):
            crash = part.close()
            if crash is not None:
                self.crashes.append(crash)
        tally = self.ledger.compare(self.stored())
        if self.store is not None:
            self.store.close()
        self.evicted = outbox_evicted(self.data / "outbox.db")
        if self.disk is not None:
            self.disk.unmount()
        self.crashes += tracebacks(self.logs)
        return tally
