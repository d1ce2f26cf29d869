"""The documented journeys, executed: README and every page of docs/ (issue 14).

Each page's `sh` blocks run in order in a fresh working directory (every top-level entry
of the checkout symlinked, so `boards/sim/cabinet.toml` resolves as from the checkout
root), with a fresh HOME (so `~/.local/state/cabinet-agent` is new), against real
processes: the agent, the simulator, Mosquitto, the ingest, PostgreSQL. The rules of the
block syntax are in tests/journeys.py. A page whose commands drift from the product fails
here, naming the block.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.broker import free_port
from tests.journeys import DATABASE, MARK, PORTS, JourneyError, Step, script, steps, strip_setup, substitute

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDISH = re.compile(r"^\s*(\$ )?(cabinet|cabinet-boot|python3?|pip|mosquitto|curl|createdb|psql)\b")
PAGE_TIMEOUT_S = 900


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _journeys() -> list[Path]:
    return [p for p in PAGES if any(s.mode != "no-run" for s in steps(p.read_text(), _rel(p)))]


# ---- the block syntax -----------------------------------------------------------------


def test_blocks_are_read_in_order_with_their_modes() -> None:
    md = (
        "intro\n```sh\ncabinet run\n```\n```text\nout\n```\n"
        "```sh background\ncabinet sim\n```\n```sh exit=2\ncabinet config check bad.toml\n```\n"
        "```sh no-run\nsystemctl start cabinet\n```\n"
    )
    got = steps(md, "x.md")
    assert [(s.mode, s.exit_code, s.text, s.source) for s in got] == [
        ("run", 0, "cabinet run", "x.md:2"),
        ("background", 0, "cabinet sim", "x.md:8"),
        ("run", 2, "cabinet config check bad.toml", "x.md:11"),
        ("no-run", 0, "systemctl start cabinet", "x.md:14"),
    ]


def test_an_unknown_token_names_the_block() -> None:
    with pytest.raises(JourneyError, match=r"x.md:3: unknown token 'bg'"):
        steps("a\nb\n```sh bg\ncabinet sim\n```\n", "x.md")


def test_readme_setup_is_dropped_and_the_command_kept() -> None:
    line = "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && cabinet run"
    assert strip_setup(line) == "cabinet run"
    assert strip_setup("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'") == ""
    assert strip_setup("cabinet status && pip list") == "cabinet status && pip list"


def test_ports_and_database_are_replaced_only_as_whole_tokens() -> None:
    text = "cabinet run --broker 127.0.0.1:1883; listener 8883; x18830 v1.1883; createdb citycloud; citycloud_x"
    got = substitute(text, {"1883": 40001, "8883": 40002}, "journey_1")
    assert (
        got == "cabinet run --broker 127.0.0.1:40001; listener 40002; x18830 v1.1883; createdb journey_1; citycloud_x"
    )


def test_the_script_runs_steps_in_one_shell(tmp_path: Path) -> None:
    page = steps(
        '```sh\nexport A=1; cd sub\n```\n```sh exit=3\n[ "$A" = 1 ] && exit 3\n```\n'
        "```sh background\nsleep 30\n```\n```sh\npwd > ../where\n```\n",
        "p.md",
    )
    (tmp_path / "sub").mkdir()
    state = tmp_path / "state"
    state.mkdir()
    text = script(page, {}, "db", state)
    rc = subprocess.run(["bash", "-c", text], cwd=tmp_path, timeout=30).returncode
    pid = int((state / "pids").read_text())
    os.killpg(pid, signal.SIGTERM)
    assert rc == 0
    assert (tmp_path / "where").read_text().strip() == str(tmp_path / "sub")
    assert "done" in (state / "marks").read_text()


def test_a_wrong_exit_code_fails_the_journey(tmp_path: Path) -> None:
    page = steps("```sh exit=2\ntrue\n```\n```sh\ntouch reached\n```\n", "p.md")
    text = script(page, {}, "db", tmp_path)
    r = subprocess.run(["bash", "-c", text], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 97 and "p.md:1 exited 0, expected 2" in r.stderr
    assert not (tmp_path / "reached").exists()


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_command_block_says_whether_it_runs(page: Path) -> None:
    """Commands sit in `sh` blocks (run, or `no-run` with a reason); output in `text` blocks.
    An unlabelled or bash/console block that starts with a command is a doc that can drift."""
    bad = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^ {0,3}(`{3,})(.*)$", lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m[1], m[2].strip().split(), i + 1
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [x for x in lines[i + 1 : j] if x.strip() and not x.lstrip().startswith("#")]
        lang = info[0] if info else ""
        if lang in ("bash", "shell", "console", "zsh") or (lang == "" and body and COMMANDISH.match(body[0])):
            bad.append(f"{_rel(page)}:{start}")
        i = j + 1
    steps(page.read_text(), _rel(page))  # and every sh block's tokens are valid
    assert not bad, f"command blocks without ```sh / ```sh no-run: {bad}"


# ---- the journeys ---------------------------------------------------------------------


def _postgres(page_text: str) -> str | None:
    """A fresh database name for `citycloud`, or None if the page needs none."""
    if not re.search(rf"\b{DATABASE}\b", page_text):
        return None
    name = f"journey_{uuid.uuid4().hex[:10]}"
    if not _pg_up():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (.ci/run starts one)")
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    return name


def _pg_up() -> bool:
    if not shutil.which("pg_isready"):
        return False
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], capture_output=True).returncode == 0


def _drop(database: str) -> None:
    subprocess.run(
        ["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "--force", database],
        capture_output=True,
        timeout=60,
    )


def _stop(state: Path) -> None:
    pids_file = state / "pids"
    pids = [int(x) for x in pids_file.read_text().split()] if pids_file.exists() else []
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


@pytest.mark.integration
@pytest.mark.parametrize("page", _journeys(), ids=_rel)
def test_journey(page: Path, tmp_path: Path) -> None:
    text = page.read_text()
    page_steps: list[Step] = steps(text, _rel(page))
    work, state = tmp_path / "work", tmp_path / "state"
    for d in (work, state):
        d.mkdir()
    # a short HOME: Unix socket paths (the agent's, the simulator's) are limited to 107 bytes
    home = Path(tempfile.mkdtemp(prefix="jh-", dir="/tmp"))
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"):
            (work / entry.name).symlink_to(entry)
    ports = {literal: free_port() for literal in PORTS}
    database = _postgres(text) or "no_database"
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CABINET_", "PYTEST_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}", PYTHONUNBUFFERED="1")
    env.update(VIRTUAL_ENV=str(Path(bin_dir).parent), COLUMNS="120")
    body = script(page_steps, ports, database, state)
    (state / "journey.sh").write_text(body)
    log = state / "output.log"
    started = time.monotonic()
    try:
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", str(state / "journey.sh")],
                cwd=work,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=PAGE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = -1
    finally:
        _stop(state)
        if database != "no_database":
            _drop(database)
        shutil.rmtree(home, ignore_errors=True)
    took = time.monotonic() - started
    marks = (state / "marks").read_text().splitlines() if (state / "marks").exists() else []
    print(f"journey {_rel(page)}: {took:.1f} s wall, {len(marks) - 1} steps")
    if rc != 0 or not marks or marks[-1] != f"{MARK} done":
        last = marks[-1] if marks else "(no step started)"
        bg = "\n".join(f"--- {p.name}\n{_tail(p, 15)}" for p in sorted(state.glob("bg-*.log")))
        pytest.fail(
            f"{_rel(page)}: journey failed (exit {rc}) at {last}\n--- output\n{_tail(log)}\n{bg}",
            pytrace=False,
        )


def test_the_journeys_cover_the_documented_users() -> None:
    names = {_rel(p) for p in _journeys()}
    assert "README.md" in names
    missing = {"docs/commissioning.md", "docs/cloud.md", "docs/ota.md", "docs/commands.md"} - names
    assert not missing, f"pages without an executed journey: {sorted(missing)}"


def test_shutil_which_finds_the_tools_the_journeys_use() -> None:
    for tool in ("bash", "setsid", "mosquitto"):
        assert shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists(), f"{tool} missing"
