"""A stored catalogue's points and site as rows (`catalogue_points`, `catalogue_sites`), so
that SQL can join readings to units, roles and the site's time zone."""

from __future__ import annotations

from typing import Any

from agent.wire.catalogue import decode


def write(cur: Any, cat_id: bytes, body: bytes) -> None:
    """The rows of one catalogue (its body already verified against its id)."""
    cat = decode(body)
    cur.executemany(
        "INSERT INTO catalogue_points (catalogue, idx, point, unit, kind, decimals, device, bus, role, description) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        [
            (cat_id, i, p.name, p.unit, p.kind, p.decimals, p.device, p.bus, p.role, p.description)
            for i, p in enumerate(cat.points)
        ],
    )
    s = cat.site
    cur.execute(
        "INSERT INTO catalogue_sites (catalogue, board, latitude, longitude, timezone) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (cat_id, cat.board, s.latitude, s.longitude, s.timezone),
    )


def backfill(cur: Any) -> None:
    """Rows for every catalogue stored before there were these tables (migration to version 3)."""
    cur.execute(
        "SELECT id, body FROM catalogues c WHERE NOT EXISTS (SELECT 1 FROM catalogue_sites s WHERE s.catalogue = c.id)"
    )
    for cat_id, body in cur.fetchall():
        write(cur, bytes(cat_id), bytes(body))
