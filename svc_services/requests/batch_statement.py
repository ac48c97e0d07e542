"""PostgreSQL: an intake batch of grid submissions as ONE statement, one round trip.

The batch used to be two: the lookups (stored keys, current item versions) with the possible duplicates, then,
once Python had made each answer with its duplicates, one INSERT of the four tables. Timed under load, each
round trip was mostly waiting (PostgreSQL's own time a third of it), and a submission waited for about one and
a half batches. Here the statement does all of it:

- **the checks guard the writes**: if a key of the batch is stored already, or an item's current version is not
  the one its submissions were checked against, nothing is written (every INSERT's SELECT is conditional on the
  guard) and the statement returns the stored records and the stale items instead; the writer replays the
  first, hands the second to the slow path and writes the others again in the next batch;
- **the possible duplicates are made in SQL**, each as the JSON pydantic makes of `DuplicateOut` (byte for byte:
  tested), for each submission from the same candidates the Python writer uses (per item, grid and caller's
  visibility: the open requests of the grid that caller may see, with the batch's own); the idempotency record
  stores the answer made on the event loop with that list spliced in, and the statement returns the lists so
  the writer answers with the same bytes;
- a key stored by another writer after the statement's snapshot still fails it on the primary key, whole, and
  the batch falls back as before.

It is planned with its values each time (never prepared), as the duplicates query must be (ADR 0009).
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Connection

from common.db import EncodedRow, RowsInsert, joined_rows

GUARD = "(SELECT ok FROM b_go)"

# One possible duplicate `c` as `DuplicateOut(match="grid").model_dump_json()` writes it: its fields in order,
# compact, the time in UTC with "Z" and six digits of microseconds unless they are all zero
_DUPLICATE_JSON = (
    """'{"id":' || to_json(c.id)::text || ',"match":"grid","distance_m":null,"grid":' """
    """|| coalesce(to_json(c.grid)::text, 'null') || ',"state":' || to_json(c.state)::text """
    """|| ',"created_at":"' || to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') """
    """|| CASE WHEN mod(extract(microseconds FROM c.created_at)::bigint, 1000000) = 0 THEN '' """
    """ELSE to_char(c.created_at AT TIME ZONE 'UTC', '.US') END || 'Z"}'""")

_ORDER = 'c.created_at DESC, c.id COLLATE "C" DESC'  # newest first, ties by id as Python compares strings


_PARAM = re.compile(r"%\((\w+)\)s")
_PER_BATCH = ("item_code", "grid", "since", "until", "limit")  # `service.same_grid_query`'s values


class BatchStatement:
    """Builds the statement (once per set of same-grid queries and row shape) and its parameters for one batch.
    A batch's submissions fall into groups of one item, grid and caller's visibility, each with its same-grid
    query (`IntakeWriter._grid_groups`); group `g`'s query's parameters are named `g{g}_…`."""

    def __init__(self, requests: RowsInsert, timeline: RowsInsert, events: RowsInsert,
                 records_table: str = "idempotency_keys") -> None:
        self.inserts = (requests, timeline, events)
        self.records_table = records_table
        self._made: dict[Any, tuple[str, dict[str, Any]] | None] = {}

    def statement(self, conn: Connection, same_grid: tuple[Any, ...], row_keys: tuple[tuple[str, ...], ...]
                  ) -> tuple[str, dict[str, Any]] | None:
        """The SQL and its fixed parameters (the same-grid queries' own constants), or None: the rows cannot be
        inserted this way (`RowsInsert.postgres_insert`)."""
        cache_key = (same_grid, row_keys)
        if cache_key not in self._made:
            if len(self._made) >= 1_000:
                self._made.clear()
            self._made[cache_key] = self._build(conn, same_grid, row_keys)
        return self._made[cache_key]

    @staticmethod
    def _group_query(conn: Connection, g: int, same_grid: Any) -> tuple[str, dict[str, Any]]:
        """Group g's same-grid query as psycopg's pyformat text, every parameter renamed `g{g}_…`: its constants
        (the open states, the caller's places) as fixed parameters; item, grid, window and limit given per batch."""
        expanded = same_grid.compile(dialect=conn.dialect).construct_expanded_state(
            {"item_code": "", "grid": "", "since": None, "until": None, "limit": 0})
        text = _PARAM.sub(lambda m: f"%(g{g}_{m.group(1)})s", expanded.statement)
        return text, {f"g{g}_{k}": v for k, v in expanded.parameters.items() if k not in _PER_BATCH}

    def _build(self, conn: Connection, same_grid: tuple[Any, ...], row_keys: tuple[tuple[str, ...], ...]):
        inserts = [inserter.postgres_insert(conn, keys, f"b_rows_{i}", where=GUARD)
                   for i, (inserter, keys) in enumerate(zip(self.inserts, row_keys))]
        if any(sql is None for sql in inserts):
            return None
        fixed: dict[str, Any] = {}
        found = []
        for g, query in enumerate(same_grid):
            text, constants = self._group_query(conn, g, query)
            fixed.update(constants)
            found.append(f"SELECT {g} AS grp, f.* FROM ({text}) f")
        q = conn.dialect.identifier_preparer.quote
        sql = f"""WITH
b_stored AS (SELECT k.caller, k.key, k.request_hash, k.status_code, k.response_body FROM {q(self.records_table)} k
  WHERE (k.caller, k.key) IN (SELECT * FROM unnest(%(b_callers)s::text[], %(b_keys)s::text[]))),
b_stale AS (SELECT j.code FROM unnest(%(b_codes)s::text[], %(b_versions)s::int[]) AS j(code, version)
  WHERE NOT EXISTS (SELECT 1 FROM catalogue_items i
                    WHERE i.code = j.code AND i.current_version = j.version AND i.active)),
b_go AS (SELECT NOT EXISTS (SELECT 1 FROM b_stored) AND NOT EXISTS (SELECT 1 FROM b_stale) AS ok),
b_found AS ({" UNION ALL ".join(found)}),
b_candidates AS MATERIALIZED (SELECT c.grp, c.id, c.created_at, {_DUPLICATE_JSON} AS json
  FROM (SELECT grp, id, state, grid, created_at FROM b_found
        UNION ALL SELECT * FROM json_to_recordset(%(b_own_candidates)s::json)
          AS o(grp int, id text, state text, grid text, created_at timestamptz)) c),
b_own AS (SELECT * FROM json_to_recordset(%(b_own)s::json) AS o(grp int, id text, created_at timestamptz)),
b_dups AS (SELECT o.id, coalesce((
    SELECT string_agg(c.json, ',' ORDER BY {_ORDER})
    FROM (SELECT * FROM b_candidates c
          WHERE c.grp = o.grp AND c.id <> o.id
            AND c.created_at BETWEEN o.created_at - %(b_window)s AND o.created_at + %(b_window)s
          ORDER BY {_ORDER} LIMIT %(b_limit)s) c), '') AS list
  FROM b_own o WHERE {GUARD}),
w0 AS ({inserts[0]}),
w1 AS ({inserts[1]}),
w2 AS ({inserts[2]}),
w3 AS (INSERT INTO {q(self.records_table)} (caller, key, request_hash, status_code, response_body, created_at)
  SELECT r.caller, r.key, r.request_hash, 201, r.prefix || d.list || ']}}', r.created_at
  FROM json_to_recordset(%(b_records)s::json)
    AS r(caller text, key text, request_hash text, prefix text, created_at timestamptz, request_id text)
  JOIN b_dups d ON d.id = r.request_id)
SELECT 'dups' AS kind, id AS a, NULL AS b, NULL AS c, NULL::int AS n, list AS body FROM b_dups
UNION ALL SELECT 'key', caller, key, request_hash, status_code, response_body FROM b_stored
UNION ALL SELECT 'stale', code, NULL, NULL, NULL, NULL FROM b_stale"""
        return sql, fixed

    @staticmethod
    def params(fixed: dict[str, Any], same_grid_params: list[dict[str, Any]], *, keyed: list[tuple[str, str]],
               items: list[tuple[str, int]], own: str, own_candidates: str, rows: tuple[list[EncodedRow], ...],
               records: str, window: timedelta, limit: int) -> dict[str, Any]:
        """One batch's parameters: each group's same-grid values, its (caller, key) pairs, (item, version)
        pairs, its submissions (JSON: group, id, time), its own requests as each group's duplicate candidates
        (JSON), its rows per table, its idempotency records (JSON, each with the answer before its list of
        duplicates), the duplicates window and limit."""
        params = {**fixed,
                  "b_callers": [c for c, _ in keyed], "b_keys": [k for _, k in keyed],
                  "b_codes": [c for c, _ in items], "b_versions": [v for _, v in items],
                  "b_own": own, "b_own_candidates": own_candidates, "b_records": records,
                  "b_window": window, "b_limit": limit}
        for g, values in enumerate(same_grid_params):
            params.update({f"g{g}_{k}": v for k, v in values.items()})
        for i, encoded in enumerate(rows):
            params[f"b_rows_{i}"] = joined_rows(encoded)
        return params
