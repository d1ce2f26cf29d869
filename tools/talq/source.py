"""What the gateway reads: the ingest's PostgreSQL database (tools/ingest/pg): each cabinet's
newest catalogue (`cabinet_catalogue`) and the last value of its points (`point_last`)."""

from __future__ import annotations

import threading
from typing import Any

from agent.wire.catalogue import Catalogue, CatalogueError, decode
from tools.ingest.pg.connect import connect
from tools.talq.mapping import DeviceMap, Latest, map_cabinet


class SourceError(RuntimeError):
    """The database cannot be read; the message says what and where."""


class PgSource:
    """One connection, used by one request at a time (the gateway answers few, small requests)."""

    def __init__(self, dsn: str, shown: str) -> None:
        self.shown = shown
        try:
            self.conn = connect(dsn, shown)
        except ModuleNotFoundError as e:
            raise SourceError(f"{shown}: psycopg is not installed (pip install 'cabinet-agent[ingest]')") from e
        except Exception as e:
            raise SourceError(f"{shown}: {e}".strip()) from e
        self.conn.autocommit = True
        self.lock = threading.Lock()
        self.maps: dict[bytes, DeviceMap] = {}  # by catalogue id: a catalogue never changes

    def close(self) -> None:
        self.conn.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            try:
                return list(self.conn.execute(sql, args).fetchall())
            except Exception as e:
                raise SourceError(f"{self.shown}: {e}".strip()) from e

    def devices(self) -> list[DeviceMap]:
        """The TALQ device of every cabinet with a catalogue, by cabinet id."""
        rows = self._rows(
            "SELECT c.cabinet, c.catalogue, k.body FROM cabinet_catalogue c JOIN catalogues k ON k.id = c.catalogue "
            "ORDER BY c.cabinet"
        )
        out = []
        for _cabinet, cat_id, body in rows:
            key = bytes(cat_id)
            if key not in self.maps:
                try:
                    cat: Catalogue = decode(bytes(body))
                except CatalogueError:
                    continue  # verified when stored; a damaged row is not a device
                self.maps[key] = map_cabinet(cat)
            out.append(self.maps[key])
        return out

    def latest(self, cabinet: str) -> Latest:
        rows = self._rows(
            "SELECT point, extract(epoch FROM at)::float8, num, flag, text, quality FROM point_last(%s)", (cabinet,)
        )
        return {
            p: (t, flag if flag is not None else num if num is not None else text, q)
            for p, t, num, flag, text, q in rows
        }
