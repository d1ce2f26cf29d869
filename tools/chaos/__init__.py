"""The soak and chaos suite: the agent, the ingest and a broker as real processes,
faults injected into them, and a count of what was lost or duplicated.

    python -m tools.chaos [SCENARIO...] [--kills N] [--seconds S] [--seed N] [--json]

ledger.py (pure bookkeeping), procs.py (the processes), disk.py (the small disk), rig.py
(the system under test and the outbox watcher), scenarios.py (the faults), suite.py (one
run and its figures), __main__.py (the command). What it proves and its figures: docs/reliability.md.
"""
