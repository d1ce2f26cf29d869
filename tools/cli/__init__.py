"""The `cabinet` command line: the one table of every command (table.py) and the
commands that live nowhere else (local control through the agent's socket)."""
