"""Async SQLAlchemy per service: SQLite (WAL, foreign keys) by default, PostgreSQL through asyncpg in production;
`WriterThreads` for the few transactions that run on a blocking driver instead."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson
from sqlalchemy import DateTime, MetaData, event, insert, text
from sqlalchemy import create_engine as create_blocking_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql import sqltypes
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")

# Stable constraint names, so Alembic migrations are reproducible on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+asyncpg")
    elif u.drivername == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    return u.render_as_string(hide_password=False)


def sqlite_pragmas(dbapi_connection, _record=None) -> None:
    """What every SQLite connection of the platform runs first (also for a plain sqlite3 connection)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def json_column_text(value) -> str:
    """How JSON columns are written: orjson, several times cheaper than the stdlib encoder SQLAlchemy uses by
    default (every outbox event and most rows carry a JSON column). Reads are unchanged (json.loads). Non-ASCII
    text is stored as UTF-8 rather than \\u escapes; both read back the same."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10, plan_cache_mode: str = "auto") -> AsyncEngine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, json_serializer=json_column_text)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    # plan_cache_mode (ADR 0009): asyncpg prepares each statement once per pooled connection, and PostgreSQL may
    # then keep a generic plan made from the statistics of that moment; "force_custom_plan" plans every execution
    # with its values (svc_services, whose queries depend on them), at the price of planning each time.
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                               json_serializer=json_column_text,
                               connect_args={"server_settings": {"plan_cache_mode": plan_cache_mode}})


class Database:
    """One engine and session factory for one service's database."""

    def __init__(self, url: str, *, echo: bool = False, plan_cache_mode: str = "auto") -> None:
        self.url = normalise_url(url)
        self.plan_cache_mode = plan_cache_mode
        self.engine = create_engine(self.url, echo=echo, plan_cache_mode=plan_cache_mode)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        self._write_lock: asyncio.Lock | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    def write_gate(self) -> AbstractAsyncContextManager:
        """Where this process's writers queue for a SQLite database, which takes one writer at a time: a writer
        that finds it locked sleeps in SQLite's busy handler (1, 2, 5, 10 … 100 ms), while one waiting here gets
        it the moment it is free. PostgreSQL: no gate."""
        if self.dialect != "sqlite":
            return nullcontext()
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    def writer_threads(self, *, threads: int = 1, name: str = "db-writer") -> WriterThreads:
        return WriterThreads(self.url, threads=threads, plan_cache_mode=self.plan_cache_mode, name=name)


# ---- query plans: one sequence of queries for either driver ----------------------------------------------
# A query whose later statements depend on earlier rows, written once as a generator that yields
# (statement, parameters) and is sent back the rows: the request handlers run it on their async session,
# a `WriterThreads` transaction on its blocking connection.
QueryPlan = Generator[tuple[Any, dict[str, Any] | None], list[Any], Any]


async def run_plan(conn: AsyncSession | AsyncConnection, plan: QueryPlan) -> Any:
    try:
        stmt, params = next(plan)
        while True:
            stmt, params = plan.send(list((await conn.execute(stmt, params)).all()))
    except StopIteration as done:
        return done.value


def run_plan_blocking(conn: Connection, plan: QueryPlan) -> Any:
    try:
        stmt, params = next(plan)
        while True:
            stmt, params = plan.send(list(conn.execute(stmt, params).all()))
    except StopIteration as done:
        return done.value


# ---- blocking transactions on threads of their own ----------------------------------------------------------
def blocking_url(url: str) -> str:
    """The same database through a blocking driver: the standard library's sqlite3, or psycopg."""
    u = make_url(normalise_url(url))
    driver = "sqlite" if u.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return u.set(drivername=driver).render_as_string(hide_password=False)


class WriterThreads:
    """Runs whole transactions on dedicated threads, through a blocking driver of the same database.

    Why: through aiosqlite every statement crosses between the event loop and aiosqlite's thread three or four
    times (cursor, execute, fetch, close), and beside a busy loop each crossing waits behind the loop's other
    work and the interpreter's switch interval. Measured on svc_services' intake (eight statements a batch):
    7–8 ms of wall time for about 2.5 ms of work, and since SQLite has one writer, that wall time was the
    service's ceiling. Here a transaction is one hand-off out and one back; the loop is never blocked, and the
    drivers release the GIL while the database works. On PostgreSQL the same code runs on psycopg.

    A transaction cannot be stopped halfway: if the awaiting task is cancelled, `run` and `call` still wait for
    the thread and then re-raise, with the outcome in `CancelledWhileWriting.outcome` so the caller can hand it
    over."""

    def __init__(self, url: str, *, threads: int = 1, plan_cache_mode: str = "auto",
                 name: str = "db-writer") -> None:
        self.url = blocking_url(url)
        u = make_url(self.url)
        if u.get_backend_name() == "sqlite":
            self.engine = create_blocking_engine(self.url, json_serializer=json_column_text, pool_size=threads)
            event.listen(self.engine, "connect", _writer_connection)
            # the write lock is taken at BEGIN, so the transaction's reads and writes see one database state
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        else:
            # The service's plan_cache_mode (ADR 0009), except force_custom_plan, which is had by other means: the
            # driver prepares nothing of its own accord, so every statement is planned with its values (a generic
            # plan costed on a young table must not stick), while the server keeps what needs no values: the
            # foreign-key checks' primary-key lookups (replanned for every inserted row under force_custom_plan)
            # and statements executed with the PREPARED option, whose plan is the same whatever the values (the
            # intake's INSERT … SELECT FROM json_to_recordset). No ping per checkout (a round trip each time): a
            # connection found dead fails its transaction, the pool drops it, and the caller's fallback decides
            connect_args: dict[str, Any] = {"options": f"-c plan_cache_mode={plan_cache_mode}"}
            if plan_cache_mode == "force_custom_plan":
                # (None would turn preparing off altogether, PREPARED included)
                connect_args = {"options": "-c plan_cache_mode=auto", "prepare_threshold": NEVER_BY_COUNT}
            self.engine = create_blocking_engine(self.url, json_serializer=json_column_text, pool_size=threads,
                                                 max_overflow=0, connect_args=connect_args)
            event.listen(self.engine, "do_execute", _execute_prepared_if_asked)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    def transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """On a writer thread: `fn(connection, *args)` inside BEGIN … COMMIT, rolled back if it raises."""
        with self.engine.begin() as conn:
            return fn(conn, *args)

    def autocommit(self, fn: Callable[..., T], *args: Any) -> T:
        """On a writer thread, PostgreSQL only: `fn(connection, *args)` outside a transaction block, each statement
        committed on its own: no BEGIN and COMMIT round trips, for work whose writes are one statement."""
        if self.engine.dialect.name != "postgresql":
            raise NotImplementedError("autocommit writes are for PostgreSQL; SQLite takes its write lock at BEGIN")
        with self.engine.connect() as conn:
            return fn(conn.execution_options(isolation_level="AUTOCOMMIT"), *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` in one transaction on a writer thread."""
        return await self.call(self.transaction, fn, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on a writer thread, which may run several transactions with `transaction`."""
        done = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            try:
                outcome = await done
            except Exception:  # noqa: BLE001 - rolled back: nothing to hand over
                raise asyncio.CancelledError() from None
            raise CancelledWhileWriting(outcome) from None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        self.engine.dispose()


NEVER_BY_COUNT = 2**31 - 1  # psycopg's prepare_threshold: executions of a statement before it prepares it itself
# execution option: prepare this statement on the server (`WriterThreads` on PostgreSQL), for a statement whose plan
# does not depend on its values
PREPARED = {"onenet_prepared": True}


def _execute_prepared_if_asked(cursor, statement, parameters, context) -> bool | None:
    if context is not None and context.execution_options.get("onenet_prepared"):
        cursor.execute(statement, parameters, prepare=True)
        return True
    return None  # SQLAlchemy's own execute


def _writer_connection(dbapi_connection, _record=None) -> None:
    sqlite_pragmas(dbapi_connection)
    dbapi_connection.isolation_level = None  # sqlite3 would otherwise BEGIN on its own, at the first write


class CancelledWhileWriting(asyncio.CancelledError):
    """The awaiting task was cancelled while its transaction ran on; this is what the transaction returned."""

    def __init__(self, outcome: Any) -> None:
        super().__init__()
        self.outcome = outcome


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
