"""Views and functions for the everyday questions (docs/cloud.md §6.2), part of schema 3.

A cabinet's catalogue is the newest it sent (`cabinet_catalogue`); units, roles and the
site's time zone come from it, so no query parses point names for them or hard-codes a zone.
"""

from __future__ import annotations

CREATE = [
    # the catalogue each cabinet uses now: the one that arrived last
    """CREATE VIEW cabinet_catalogue AS
         SELECT DISTINCT ON (h.cabinet) h.cabinet, h.id AS catalogue, to_timestamp(h.from_t) AS since
         FROM catalogue_history h ORDER BY h.cabinet, h.from_t DESC, h.id""",
    # 1. the last value and quality of every point of a cabinet, with its unit
    """CREATE FUNCTION point_last(cab TEXT) RETURNS TABLE (point TEXT, at TIMESTAMPTZ, kind CHAR(1),
         num DOUBLE PRECISION, flag BOOLEAN, text TEXT, doc JSONB, quality TEXT, reason TEXT, unit TEXT, role TEXT)
       LANGUAGE sql STABLE AS $$
         SELECT DISTINCT ON (r.point) r.point, r.t, r.kind, r.num, r.flag, r.text, r.doc, r.quality, r.reason,
                p.unit, p.role
         FROM readings r
         LEFT JOIN cabinet_catalogue c ON c.cabinet = r.cabinet
         LEFT JOIN catalogue_points p ON p.catalogue = c.catalogue AND p.point = r.point
         WHERE r.cabinet = cab ORDER BY r.point, r.t DESC $$""",
    # 2. energy (kWh) and burning hours per lighting segment per local day of the site
    """CREATE VIEW segment_days AS
         WITH per_point AS (
           SELECT r.cabinet, split_part(p.role, '.', 2) AS segment, p.unit, s.timezone,
                  (r.t AT TIME ZONE s.timezone)::date AS day, max(r.num) - min(r.num) AS rise
           FROM readings r
           JOIN cabinet_catalogue c ON c.cabinet = r.cabinet
           JOIN catalogue_points p ON p.catalogue = c.catalogue AND p.point = r.point
           JOIN catalogue_sites s ON s.catalogue = c.catalogue
           WHERE p.device = 'lighting' AND p.role LIKE 'lighting.%' AND r.quality = 'good' AND r.num IS NOT NULL
             AND (r.point LIKE '%.energy_kwh' OR r.point LIKE '%.burning_h')
           GROUP BY 1, 2, 3, 4, 5)
         SELECT cabinet, segment, day, timezone, sum(rise) FILTER (WHERE unit = 'kWh') AS kwh,
                sum(rise) FILTER (WHERE unit = 'h') AS burning_h
         FROM per_point GROUP BY cabinet, segment, day, timezone""",
    # 3. alarms: one row per episode (raised .. cleared), with the acknowledgement
    """CREATE VIEW alarm_episodes AS
         WITH ev AS (
           SELECT cabinet, point, t, doc, doc->>'transition' AS transition,
                  count(*) FILTER (WHERE doc->>'transition' = 'raised')
                    OVER (PARTITION BY cabinet, point ORDER BY t, seq) AS episode
           FROM readings WHERE point LIKE 'alarm.%' AND doc IS NOT NULL)
         SELECT cabinet, substr(point, 7) AS alarm, episode,
                min(doc->>'severity') AS severity,
                min(t) FILTER (WHERE transition = 'raised') AS raised,
                min(t) FILTER (WHERE transition = 'acknowledged') AS acked,
                min(doc->>'by') FILTER (WHERE transition = 'acknowledged') AS acked_by,
                min(t) FILTER (WHERE transition = 'cleared') AS cleared,
                min(t) FILTER (WHERE transition = 'cleared') - min(t) FILTER (WHERE transition = 'raised') AS duration,
                min(doc->>'message') FILTER (WHERE transition = 'raised') AS message
         FROM ev WHERE episode > 0 GROUP BY cabinet, point, episode""",
    # 4. data completeness: the silences of each cabinet longer than max_gap (every point is sent at least
    #    every heartbeat, 900 s by default, so a longer silence is missing data or a cabinet offline)
    """CREATE FUNCTION heartbeat_gaps(since TIMESTAMPTZ, until TIMESTAMPTZ, max_gap INTERVAL)
       RETURNS TABLE (cabinet TEXT, gap_from TIMESTAMPTZ, gap_to TIMESTAMPTZ, gap INTERVAL)
       LANGUAGE sql STABLE AS $$
         SELECT cabinet, prev, t, t - prev FROM (
           SELECT cabinet, t, lag(t) OVER (PARTITION BY cabinet ORDER BY t) AS prev
           FROM readings WHERE t >= since AND t < until) g
         WHERE t - prev > max_gap ORDER BY cabinet, prev $$""",
    # 5. the configuration state of each cabinet: its catalogue (config version, board, site) and the
    #    last config event (event.config.committed / rolled_back / ...)
    """CREATE VIEW cabinet_config AS
         SELECT c.cabinet, k.config_version, s.board, s.timezone, c.since AS catalogue_since,
                e.event AS last_config_event, e.t AS last_config_event_at, e.doc AS last_config_event_doc
         FROM cabinet_catalogue c
         JOIN catalogues k ON k.id = c.catalogue
         JOIN catalogue_sites s ON s.catalogue = c.catalogue
         LEFT JOIN LATERAL (
           SELECT substr(r.point, 14) AS event, r.t, r.doc FROM readings r
           WHERE r.cabinet = c.cabinet AND r.point LIKE 'event.config.%' ORDER BY r.t DESC LIMIT 1) e ON TRUE""",
]
