"""The agent's recent log lines for the console: a logging handler that keeps the last
`capacity` records, formatted as the agent's text log lines (agent.logs.TextFormatter), in a
ring. The agent logs to stderr (journald keeps it); this ring is what the console can show
without reading the journal: the tail (`GET /api/log`) and the diagnostics bundle.

The handler is attached to the root logger while the console runs and removed when it stops.
Each line carries a sequence number, so a page asks only for the lines after the last it has."""

from __future__ import annotations

import logging
from collections import deque

from agent.logs import TextFormatter

MAX_LINE = 2000  # characters kept of one record (a traceback is cut, the log keeps it whole)


class LogRing(logging.Handler):
    def __init__(self, capacity: int = 1000, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.setFormatter(TextFormatter())
        self.lines: deque[tuple[int, str, str]] = deque(maxlen=capacity)  # (seq, level, text)
        self.seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a record that cannot be formatted must not break logging
            text = f"{record.levelname} {record.name} (unformattable record: {record.msg!r})"
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + " …"
        self.seq += 1
        self.lines.append((self.seq, record.levelname, text))

    def tail(self, after: int = 0, limit: int = 200, level: str | None = None) -> list[dict[str, object]]:
        """The last `limit` lines with a sequence number above `after`, oldest first; `level`:
        only lines at that level or above (DEBUG, INFO, WARNING, ERROR)."""
        floor = logging.getLevelName(level.upper()) if level else 0
        if not isinstance(floor, int):
            raise ValueError(f"unknown level {level!r} (debug, info, warning, error)")
        picked = [
            {"seq": seq, "level": lvl, "line": text}
            for seq, lvl, text in self.lines
            if seq > after and logging.getLevelName(lvl) >= floor
        ]
        return picked[-limit:] if limit > 0 else []

    def text(self) -> str:
        return "".join(text + "\n" for _, _, text in self.lines)

    def attach(self) -> None:
        root = logging.getLogger()
        if self not in root.handlers:
            root.addHandler(self)

    def detach(self) -> None:
        logging.getLogger().removeHandler(self)
