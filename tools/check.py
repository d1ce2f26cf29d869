"""`python -m tools.check`: every check of the house in one command, as CI runs it.

    ruff check          lint (rules and the reason for each ignore in ruff.toml)
    ruff format --check the formatter's layout
    mypy                types (setup.cfg [mypy]: zero errors; strict for drivers/, the
                        controllers and the wire formats)
    lint-imports        the import rules (setup.cfg [importlinter])
    pole firmware       boards/pole_node/ type-checked against the MicroPython stubs, compiled by mpy-cross
    cycles              no import cycle between any two modules of ours, function-level
                        imports included
    private names       no module imports another module's _private name

Exit 0 when all pass; otherwise 1, after running every check (so one run shows all
that is wrong). `--fix` lets ruff fix and format what it can first.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOTS = ("agent", "drivers", "boards", "ota", "tools")
TREE = (*ROOTS, "tests")
TOP = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    """A console script of this venv (next to the interpreter), else `python -m name`."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return [str(here)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", name.replace("-", "_")]


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in our import graph."""
    import grimp  # import-linter's graph builder: installed with it

    graph = grimp.build_graph(*ROOTS)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit on deep graphs
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = []

        def enter(v: str) -> None:
            nonlocal counter
            index[v] = low[v] = counter
            counter += 1
            stack.append(v)
            on_stack.add(v)
            work.append((v, iter(sorted(graph.find_modules_directly_imported_by(v)))))

        enter(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    enter(w)
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def private_imports() -> list[str]:
    """`from our.module import _name` from outside `our`'s own package: a private name
    used across modules. (A package may share `_private` helper modules among its own
    modules, e.g. drivers/profiles/_probe.py.)"""
    problems = []
    for root in TREE:
        for path in sorted((TOP / root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            package = ".".join(path.relative_to(TOP).with_suffix("").parts[:-1])
            for node in ast.walk(tree):
                if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                    continue
                if node.module.split(".")[0] not in TREE:
                    continue
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and not (
                        node.module == package and (TOP / package.replace(".", "/") / f"{alias.name}.py").exists()
                    ):
                        rel = path.relative_to(TOP)
                        problems.append(f"{rel}:{node.lineno}: imports {node.module}.{alias.name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.check", description="lint, format, types, import rules")
    ap.add_argument("--fix", action="store_true", help="let ruff fix and format what it can first")
    args = ap.parse_args(argv)
    ruff = _tool("ruff")
    if args.fix:
        subprocess.run([*ruff, "check", "--fix", "--quiet", *TREE], cwd=TOP, check=False)
        subprocess.run([*ruff, "format", "--quiet", *TREE], cwd=TOP, check=False)
    steps = [
        ("ruff check", [*ruff, "check", *TREE]),
        ("ruff format --check", [*ruff, "format", "--check", *TREE]),
        ("mypy", [*_tool("mypy")]),
        ("lint-imports", [*_tool("lint-imports"), "--no-cache"]),
        ("pole firmware", [sys.executable, "-m", "tools.pole.firmware", "check"]),  # MicroPython stubs, mpy-cross
    ]
    failed = []
    for name, cmd in steps:
        t0 = time.monotonic()
        rc = subprocess.run(cmd, cwd=TOP, check=False).returncode
        print(
            f"check: {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {time.monotonic() - t0:.1f} s", flush=True
        )
        if rc:
            failed.append(name)
    cycles = import_cycles()
    for component in cycles:
        print("import cycle: " + " <-> ".join(component))
    print(f"check: cycles: {'ok' if not cycles else f'FAILED ({len(cycles)})'}")
    private = private_imports()
    for line in private:
        print(line)
    print(f"check: private names: {'ok' if not private else f'FAILED ({len(private)})'}")
    failed += ["cycles"] * bool(cycles) + ["private names"] * bool(private)
    print("check: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
