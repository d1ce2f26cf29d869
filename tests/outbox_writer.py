"""Kill -9 harness for the outbox: a writer child process, the checker that reopens
the store after each kill, and a soak mode.

Child (`python tests/outbox_writer.py child DB START SEED`): appends readings whose
value is an increasing number (from START), in random slices and priorities; now
and then flushes, seals (a fake encode: JSON of the numbers) and acknowledges some
unacked batches. It reports on stdout, line-buffered, only after the fact:
  R <boot_epoch>            store opened
  F <n>                     flush() returned: every number START..n is committed
  S <seq>                   seal() returned batch seq
  a <seq> <json numbers>    about to ack seq (it held these numbers)
  A <seq>                   ack() returned: seq is gone for good
  E <seq>                   (--hang-in-encode) encode was called with seq and hangs

`run_kills()` starts a child, SIGKILLs it after a random few to few hundred ms, reopens
the store in this process and checks: every number up to the last F is present
exactly once (in rows or unacked batches) unless its batch was acknowledged; nothing
present before is gone unless acknowledged; acked batches never come back; sealed
batches come back byte-identical; sequence numbers strictly increase across all runs;
boot_epoch increases. Then the next child continues from the highest number seen.

Soak: `python tests/outbox_writer.py --soak 1000 [--seed N] [--dir DIR]`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import WallClock
from agent.model import Priority, Quality, Reading
from agent.outbox.writer import Outbox


def encode(readings: list[Reading], seq: int) -> bytes:
    return json.dumps({"seq": seq, "n": [r.value for r in readings]}).encode()


def numbers(payload: bytes) -> list[int]:
    return json.loads(payload)["n"]


async def child(db: str, start: int, seed: int, hang_in_encode: bool = False) -> None:
    rng = random.Random(seed)
    out = sys.stdout
    ob = Outbox(
        db,
        clock=WallClock(),
        queue_max=rng.choice([500, 5000]),
        commit_interval_s=rng.choice([0.0, 0.003, 0.02]),
        commit_rows=rng.choice([20, 300, 2000]),
    )
    await ob.start()
    print("R", ob.boot_epoch, file=out)
    n = start
    if hang_in_encode:
        await ob.put([Reading("p0", float(n), n, Quality.GOOD)])
        await ob.flush()
        print("F", n, file=out)

        def hang(readings: list[Reading], seq: int) -> bytes:
            print("E", seq, file=out)
            time.sleep(3600)
            return b""

        await ob.seal(hang, max_readings=10)
    while True:
        k = rng.randint(1, 60)
        prio = rng.choices((Priority.ALARM, Priority.EVENT, Priority.TELEMETRY), (1, 2, 10))[0]
        await ob.put([Reading(f"p{i % 5}", float(i), i, Quality.GOOD) for i in range(n, n + k)], prio)
        n += k
        r = rng.random()
        if r < 0.3:
            await ob.flush()
            print("F", n - 1, file=out)
        elif r < 0.55:
            sealed = await ob.seal(encode, max_readings=rng.randint(1, 400), min_priority_first=rng.random() < 0.8)
            if sealed is not None:
                print("S", sealed.seq, file=out)
        elif r < 0.7:
            batches = ob.unacked()
            pick = batches[: rng.randint(0, len(batches))]
            if pick:
                for b in pick:
                    print("a", b.seq, json.dumps(numbers(b.payload)), file=out)
                await ob.ack(b.seq for b in pick)
                for b in pick:
                    print("A", b.seq, file=out)


class Checker:
    """What a series of killed runs must preserve (see the module docstring)."""

    def __init__(self) -> None:
        self.present: set[int] = set()  # numbers in the store at the last check
        self.payloads: dict[int, bytes] = {}  # unacked seq -> payload at the last check
        self.acked_seqs: set[int] = set()
        self.acked_nums: set[int] = set()
        self.max_seq = 0
        self.boot_epoch = 0
        self.next_start = 1
        self.runs = self.flushes = self.seals = self.acks = 0
        self.flushed = 0  # numbers whose durability was checked

    async def check(self, db: str, lines: list[str], start: int) -> None:
        flushed = start - 1
        sealed: list[int] = []
        intents: dict[int, list[int]] = {}  # seq -> numbers, from the "a" line written before the ack
        done: set[int] = set()
        for line in lines:
            tag, _, rest = line.partition(" ")
            if tag == "R":
                assert int(rest) > self.boot_epoch, f"boot_epoch went back: {rest} after {self.boot_epoch}"
                self.boot_epoch = int(rest)
            elif tag == "F":
                flushed = int(rest)
                self.flushes += 1
            elif tag == "S":
                sealed.append(int(rest))
            elif tag == "a":
                seq_text, nums_json = rest.split(" ", 1)
                intents[int(seq_text)] = json.loads(nums_json)
            elif tag == "A":
                done.add(int(rest))
        assert sealed == sorted(set(sealed)), f"sequence numbers not strictly increasing in one run: {sealed}"
        assert not sealed or sealed[0] > self.max_seq, f"seq {sealed[0]} reused (had {self.max_seq})"
        ob = Outbox(db, clock=WallClock())
        await ob.start()
        try:
            assert ob.boot_epoch > self.boot_epoch
            self.boot_epoch = ob.boot_epoch
            rows = [r.value for _, r in ob.peek(limit=10**9)]
            batches = {b.seq: b.payload for b in ob.unacked()}
            next_seq = ob.stats()["next_seq"]
        finally:
            await ob.close()
        in_batches = [n for p in batches.values() for n in numbers(p)]
        counts = collections.Counter(rows + in_batches)
        dups = [n for n, c in counts.items() if c > 1]
        assert not dups, f"numbers stored twice: {dups[:10]}"
        now_present = set(counts)
        # batches whose ack committed (with or without the "A" line)
        for seq, nums in intents.items():
            if seq not in batches:
                self.acked_seqs.add(seq)
                self.acked_nums.update(nums)
        assert done <= self.acked_seqs, f"acked batches came back: {sorted(done - self.acked_seqs)}"
        back = self.acked_seqs & set(batches)
        assert not back, f"acked batches came back: {sorted(back)}"
        assert not (now_present & self.acked_nums), (
            f"acked numbers came back: {sorted(now_present & self.acked_nums)[:10]}"
        )
        for seq, payload in self.payloads.items():
            if seq not in self.acked_seqs:
                assert batches.get(seq) == payload, f"batch {seq} lost or changed across a restart"
        for seq in sealed:
            assert seq in batches or seq in self.acked_seqs, f"sealed batch {seq} lost"
        new = set(batches) - set(self.payloads)
        assert all(s > self.max_seq for s in new), f"new batch with an old seq: {sorted(new)}"
        lost_before = self.present - now_present - self.acked_nums
        assert not lost_before, f"stored numbers vanished on restart: {sorted(lost_before)[:10]}"
        missing = [n for n in range(start, flushed + 1) if n not in now_present and n not in self.acked_nums]
        assert not missing, f"flushed numbers lost: {missing[:10]} (flushed up to {flushed}, run from {start})"
        seen = max(set(batches) | set(sealed) | set(intents) | {self.max_seq})
        assert next_seq > seen, f"next_seq {next_seq} would reuse {seen}"
        self.max_seq = seen
        self.present, self.payloads = now_present, batches
        self.flushed += max(0, flushed - start + 1)
        self.seals += len(sealed)
        self.acks += len(done)
        self.runs += 1
        self.next_start = max(now_present | self.acked_nums | {flushed, start - 1}) + 1


async def _drain(stream: asyncio.StreamReader, lines: list[str], ready: asyncio.Event) -> None:
    while True:
        raw = await stream.readline()
        if not raw:
            return
        if raw.endswith(b"\n"):  # a torn last line is not a report
            lines.append(raw.decode().strip())
            if lines[-1].startswith("R "):
                ready.set()


async def run_one(
    db: str, start: int, seed: int, delay: float, after_ready: bool, hang_in_encode: bool = False
) -> tuple[list[str], str]:
    args = [sys.executable, __file__, "child", db, str(start), str(seed)] + (
        ["--hang-in-encode"] if hang_in_encode else []
    )
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    ready = asyncio.Event()
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPEs
    reader = asyncio.create_task(_drain(proc.stdout, lines, ready))
    errs = asyncio.create_task(proc.stderr.read())
    try:
        if after_ready:
            await asyncio.wait_for(ready.wait(), 20)
        if hang_in_encode:
            while not any(x.startswith("E ") for x in lines):
                await asyncio.sleep(0.005)
        await asyncio.sleep(delay)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await reader
    err = (await errs).decode(errors="replace")
    if proc.returncode != -9:
        raise AssertionError(f"writer exited by itself ({proc.returncode}):\n{err[-3000:]}")
    return lines, err


async def run_kills(db: str, kills: int, seed: int = 1, max_delay: float = 0.3, progress: bool = False) -> Checker:
    rng = random.Random(seed)
    checker = Checker()
    for i in range(kills):
        start = checker.next_start
        after_ready = rng.random() > 0.15  # some kills land in start-up (open, migration, boot_epoch)
        delay = rng.uniform(0.003, max_delay) if after_ready else rng.uniform(0.0, 0.15)
        lines, _ = await run_one(db, start, rng.randrange(2**32), delay, after_ready)
        await checker.check(db, lines, start)
        if progress and (i + 1) % 50 == 0:
            print(
                f"{i + 1} kills: {checker.flushed} flushed numbers checked, {checker.seals} seals, "
                f"{checker.acks} acks, max seq {checker.max_seq}, boot_epoch {checker.boot_epoch}",
                flush=True,
            )
    return checker


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", choices=("child",))
    ap.add_argument("args", nargs="*")
    ap.add_argument("--hang-in-encode", action="store_true")
    ap.add_argument("--soak", type=int, metavar="KILLS", help="run this many kill/reopen/check rounds")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--dir", help="where to keep the outbox file (default: a temp dir)")
    a = ap.parse_args(argv)
    if a.mode == "child":
        assert isinstance(sys.stdout, io.TextIOWrapper)  # the child's stdout is the parent's pipe
        sys.stdout.reconfigure(line_buffering=True)
        db, start, seed = a.args
        asyncio.run(child(db, int(start), int(seed), a.hang_in_encode))
        return 0
    if not a.soak:
        ap.error("give child DB START SEED, or --soak KILLS")
    with tempfile.TemporaryDirectory(prefix="outbox-soak-") as tmp:
        db = str(Path(a.dir or tmp) / "soak.db")
        t0 = time.monotonic()
        print(f"soak: {a.soak} kills, seed {a.seed}, {db}", flush=True)
        c = asyncio.run(run_kills(db, a.soak, seed=a.seed, progress=True))
        print(
            f"ok: {c.runs} kills in {time.monotonic() - t0:.0f} s, {c.flushed} flushed numbers checked, "
            f"{c.seals} seals, {c.acks} acks, max seq {c.max_seq}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
