"""Many rows into one table in one statement, storing exactly what SQLAlchemy's executemany stores: on SQLite an
INSERT … SELECT over a JSON array of the rows, on PostgreSQL (psycopg) over json_to_recordset."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple

import orjson
from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeDecorator

from common.db import PREPARED, UTCDateTime, json_column_text


# ---- bulk writes on SQLite ----------------------------------------------------------------------------------
# aiosqlite runs each statement in its own thread. executemany hands the GIL back and forth for every row, and
# next to a busy event loop each handover waits out the interpreter's switch interval: a 20,000-row executemany
# measured 55 ms beside an idle loop and minutes beside a busy one. One INSERT … SELECT over a JSON array of
# the rows is a single statement that SQLite runs in C with the GIL released throughout (the same 20,000 rows:
# 130–150 ms, busy loop or not).
def sqlite_json_insert(table: str, columns: tuple[str, ...] | list[str], tail: str = "") -> str:
    """`INSERT INTO table (columns) SELECT …` the rows of a JSON array of arrays (bound as one parameter, see
    `json_rows`), then `tail` (an ON CONFLICT clause; the `WHERE true` keeps SQLite from reading it as a join)."""
    picks = ", ".join(f"value ->> {i}" for i in range(len(columns)))
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {picks} FROM json_each(?) WHERE true {tail}".rstrip()


def sqlite_timestamp(v: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC, always with microseconds): comparisons in
    queries are on this text, so raw inserts must write exactly the same form."""
    if v is None:
        return None
    if v.tzinfo is not None and v.utcoffset():
        v = v.astimezone(timezone.utc)
    return v.replace(tzinfo=None).isoformat(" ", "microseconds")


def json_rows(rows: list[tuple] | list[list]) -> str:
    """The rows as one JSON array for `sqlite_json_insert` (text, numbers and NULL come back as they went in;
    NaN becomes NULL, as SQLite stores it anyway). Timestamps must already be text in the stored form: orjson
    would write a datetime as RFC 3339, which does not compare with what SQLAlchemy stores."""
    return orjson.dumps(rows).decode()


# ---- many rows into one table, on any backend ---------------------------------------------------------------
_PLAIN_TYPES = (sqltypes.String, sqltypes.Integer, sqltypes.Float)  # bound as they are on SQLite


def _sqlite_value(column) -> Callable[[Any], Any] | None | bool:
    """How one column's Python value is written as `sqlite_json_insert` text: a converter, None (as it is), or
    False when this column's type is not one we know how to write (the caller then uses executemany)."""
    t = column.type
    if isinstance(t, UTCDateTime) or isinstance(t, sqltypes.DateTime):
        return sqlite_timestamp
    if isinstance(t, sqltypes.JSON):  # what SQLAlchemy's JSON type binds: None is JSON null unless none_as_null
        if t.none_as_null:
            return lambda v: None if v is None else json_column_text(v)
        return json_column_text
    if isinstance(t, sqltypes.Boolean):
        return lambda v: None if v is None else int(bool(v))
    if isinstance(t, _PLAIN_TYPES) and not isinstance(t, (TypeDecorator, sqltypes.Enum)):
        return None
    return False


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetime refused: pass an aware UTC datetime")  # as UTCDateTime binds
    return value


def _postgres_value(column) -> tuple[str, Callable[[Any], Any] | None, str] | bool:
    """How one column's Python value goes through `json_to_recordset` on PostgreSQL: the record field's type,
    a converter (or None: orjson writes it as it is), and the cast that makes the column's value of the field;
    False when this column's type is not one we know how to write."""
    t = column.type
    if isinstance(t, UTCDateTime):
        return "timestamptz", _aware, ""
    if isinstance(t, sqltypes.DateTime):
        return ("timestamptz" if t.timezone else "timestamp"), None, ""
    if isinstance(t, sqltypes.JSON):  # the text SQLAlchemy binds (None is JSON null unless none_as_null), cast
        convert = (lambda v: None if v is None else json_column_text(v)) if t.none_as_null else json_column_text
        return "text", convert, "::json"
    if isinstance(t, sqltypes.Boolean):
        return "boolean", None, ""
    if isinstance(t, (TypeDecorator, sqltypes.Enum)):
        return False
    if isinstance(t, sqltypes.String):
        return "text", None, ""
    if isinstance(t, sqltypes.Integer):
        return "bigint", None, ""
    if isinstance(t, sqltypes.Float):
        return "double precision", None, ""
    return False


def _remembering(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    seen: dict = {}

    def converted(value):
        hit = seen.get(value, seen)
        if hit is seen:
            hit = seen[value] = convert(value)
        return hit

    return converted


def joined_rows(rows: list["EncodedRow"]) -> str:
    """Encoded rows of one insert as the one JSON array parameter its statement takes."""
    first = rows[0].keys
    if any(r.keys != first for r in rows):
        raise ValueError("encoded rows of one insert must have the same keys")
    return "[" + ",".join(r.text for r in rows) + "]"


class EncodedRow(NamedTuple):
    """One row already converted and dumped for one dialect's JSON form (`RowsInsert.encode`): the writer
    that inserts it only joins texts."""
    keys: tuple[str, ...]
    text: str


class RowsInsert:
    """`INSERT` of many rows (dicts with the same keys) into one table, storing exactly what
    `conn.execute(insert(table), rows)` stores. On SQLite it is one `sqlite_json_insert` statement, which SQLite
    runs in C without taking the GIL per row; an executemany from aiosqlite's thread hands the GIL back and
    forth for every row, beside an event loop busy with requests, and SQLAlchemy's per-row bind processing runs
    on that loop. On PostgreSQL through psycopg (the blocking form, on `WriterThreads`) it is one
    `INSERT … SELECT … FROM json_to_recordset(…)`: one execution instead of one per row. Other drivers, and any
    row set this cannot write exactly (a column type it does not know, a left-out column with a Python-side
    default), go through SQLAlchemy as before."""

    def __init__(self, table) -> None:
        self.table = table
        self._plans: dict[tuple[str, ...], tuple[str, list] | None] = {}
        self._pg_plans: dict[tuple[str, ...], tuple[str, list] | None] = {}
        self._pg_encoders: dict[tuple[str, ...], list | None] = {}

    def _writable(self, keys: tuple[str, ...], value_of: Callable[[Any], Any]) -> list | None:
        """`value_of(column)` for each key's column; None when a key is no column, a left-out column has a
        Python-side default, or `value_of` does not know a column's type (False)."""
        columns = self.table.columns
        if not all(k in columns for k in keys) or any(c.default is not None and c.key not in keys for c in columns):
            return None
        values = [value_of(columns[k]) for k in keys]
        return None if any(v is False for v in values) else values

    def _plan(self, keys: tuple[str, ...]) -> tuple[str, list] | None:
        if keys not in self._plans:
            converters = self._writable(keys, _sqlite_value)
            self._plans[keys] = None if converters is None else (
                sqlite_json_insert(self.table.name, [self.table.columns[k].name for k in keys]), converters)
        return self._plans[keys]

    def _statement(self, dialect: str, rows: list[dict]) -> tuple[str, tuple[str]] | None:
        """The one `sqlite_json_insert` statement and its parameter, or None: SQLAlchemy's executemany writes them."""
        if isinstance(rows[0], EncodedRow):
            return (self._plan(rows[0].keys)[0], (joined_rows(rows),)) if dialect == "sqlite" else None
        keys = tuple(rows[0])
        plan = self._plan(keys) if dialect == "sqlite" else None
        first = rows[0].keys()
        if plan is None or any(r.keys() != first for r in rows):
            return None
        sql, converters = plan
        # a batch often repeats a timestamp (one "now" for every row, an event's time beside its record's):
        # each distinct value is converted once
        timestamp = _remembering(sqlite_timestamp)
        pairs = [(k, timestamp if c is sqlite_timestamp else c) for k, c in zip(keys, converters)]
        encoded = [[row[k] if convert is None else convert(row[k]) for k, convert in pairs] for row in rows]
        return sql, (json_rows(encoded),)

    def encode(self, dialect: str, row: dict) -> EncodedRow | None:
        """`row` made ready for `blocking` / `blocking_together` on `dialect`, on the caller's thread: a writer
        that every submission waits for then only joins the rows' texts (converting and dumping them was a
        sixth of the intake writer's time). None when the row must go through SQLAlchemy."""
        keys = tuple(row)
        if dialect == "sqlite":
            plan = self._plan(keys)
            if plan is None:
                return None
            return EncodedRow(keys, orjson.dumps(
                [row[k] if convert is None else convert(row[k]) for k, convert in zip(keys, plan[1])]).decode())
        if dialect == "postgresql":
            fields = self._pg_fields(keys)
            if fields is None:
                return None
            return EncodedRow(keys, orjson.dumps(
                {name: row[k] if convert is None else convert(row[k]) for k, name, convert in fields}).decode())
        return None

    def _pg_fields(self, keys: tuple[str, ...]) -> list | None:
        """Each key's column name and converter for `json_to_recordset`, or None (`_postgres_value`)."""
        if keys not in self._pg_encoders:
            fields = self._writable(keys, _postgres_value)
            self._pg_encoders[keys] = None if fields is None else [
                (k, str(self.table.columns[k].name), f[1]) for k, f in zip(keys, fields)]
        return self._pg_encoders[keys]

    async def __call__(self, conn: AsyncConnection, rows: list[dict]) -> None:
        if not rows:
            return
        statement = self._statement(conn.dialect.name, rows)
        if statement is None:
            await conn.execute(insert(self.table), rows)
        else:
            await conn.exec_driver_sql(*statement)

    def _postgres_plan(self, keys: tuple[str, ...], quote: Callable[[str], str]) -> tuple[str, list] | None:
        if keys not in self._pg_plans:
            plan = None
            fields = self._writable(keys, _postgres_value)
            if fields is not None:
                names = [str(self.table.columns[k].name) for k in keys]  # orjson takes exact str keys only
                quoted = [quote(n) for n in names]
                record = ", ".join(f"{q} {f[0]}" for q, f in zip(quoted, fields))
                picks = ", ".join(f"x.{q}{f[2]}" for q, f in zip(quoted, fields))
                sql = (f"INSERT INTO {quote(self.table.name)} ({', '.join(quoted)}) SELECT {picks} "
                       f"FROM json_to_recordset(%(@)s::json) AS x({record})")
                plan = (sql, self._pg_fields(keys))
            self._pg_plans[keys] = plan
        return self._pg_plans[keys]

    def postgres_insert(self, conn: Connection, keys: tuple[str, ...], param: str, where: str = "") -> str | None:
        """The `INSERT … SELECT … FROM json_to_recordset(%(param)s)` of `EncodedRow`s with these keys, with a
        condition on the SELECT, for a caller composing it into a bigger statement; None when it cannot be one."""
        if conn.dialect.name != "postgresql" or conn.dialect.paramstyle != "pyformat":
            return None
        plan = self._postgres_plan(keys, conn.dialect.identifier_preparer.quote)
        if plan is None:
            return None
        return plan[0].replace("%(@)s", f"%({param})s") + (f" WHERE {where}" if where else "")

    def _postgres_statement(self, conn: Connection, rows: list[dict], param: str) -> tuple[str, dict] | None:
        """One `INSERT … SELECT … FROM json_to_recordset(…)` for psycopg (the rows as one JSON parameter), or
        None: SQLAlchemy's executemany writes them."""
        if isinstance(rows[0], EncodedRow):
            sql = self.postgres_insert(conn, rows[0].keys, param)
            return None if sql is None else (sql, {param: joined_rows(rows)})
        if conn.dialect.name != "postgresql" or conn.dialect.paramstyle != "pyformat":
            return None
        keys = tuple(rows[0])
        plan = self._postgres_plan(keys, conn.dialect.identifier_preparer.quote)
        first = rows[0].keys()
        if plan is None or any(r.keys() != first for r in rows):
            return None
        sql, fields = plan
        encoded = [{name: row[k] if convert is None else convert(row[k]) for k, name, convert in fields}
                   for row in rows]
        return sql.replace("%(@)s", f"%({param})s"), {param: orjson.dumps(encoded).decode()}

    def blocking(self, conn: Connection, rows: list[dict]) -> None:
        """The same on a blocking connection (`WriterThreads`); on PostgreSQL through psycopg, one statement too."""
        if not rows:
            return
        statement = self._statement(conn.dialect.name, rows) or self._postgres_statement(conn, rows, "rows")
        if statement is None:
            conn.execute(insert(self.table), rows)
        else:
            conn.exec_driver_sql(*statement, execution_options=PREPARED)

    @staticmethod
    def blocking_together(conn: Connection, parts: list[tuple["RowsInsert", list[dict]]]) -> None:
        """Rows into several tables, in the order given. On PostgreSQL one statement (each table's INSERT a
        data-modifying CTE of the next; foreign keys between them are checked at the statement's end): one
        round trip instead of one per table."""
        parts = [(inserter, rows) for inserter, rows in parts if rows]
        if len(parts) > 1 and conn.dialect.name == "postgresql":
            statements = [inserter._postgres_statement(conn, rows, f"rows_{i}")
                          for i, (inserter, rows) in enumerate(parts)]
            if all(statement is not None for statement in statements):
                *before, last = statements
                sql = "WITH " + ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(before)) + " " + last[0]
                conn.exec_driver_sql(sql, {k: v for _, params in statements for k, v in params.items()},
                                     execution_options=PREPARED)
                return
        for inserter, rows in parts:
            inserter.blocking(conn, rows)
