"""Async SQLAlchemy per service: SQLite (WAL, foreign keys) by default, PostgreSQL through asyncpg in production;
query plans that run on either driver. Beside it: `common.writer_threads` (transactions on a blocking driver's
threads) and `common.bulk_insert` (many rows in one statement)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from common.writer_threads import WriterThreads

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
        self._write_gate: Any = None

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

    def write_gate(self, *, urgent: bool = False) -> AbstractAsyncContextManager:
        """Where this process's writers queue for a SQLite database, which takes one writer at a time: a writer
        that finds it locked sleeps in SQLite's busy handler (1, 2, 5, 10 … 100 ms), while one waiting here gets
        it the moment it is free (`common.write_gate`: from any thread's loop; `urgent` goes ahead of the queue).
        PostgreSQL: no gate."""
        if self.dialect != "sqlite":
            return nullcontext()
        if self._write_gate is None:
            from common.write_gate import WriteGate

            self._write_gate = WriteGate()
        return self._write_gate(urgent=urgent)

    @property
    def urgent_writer_waiting(self) -> bool:
        """An urgent writer waits at the gate (a writer holding it ends its turn early)."""
        return self._write_gate is not None and self._write_gate.urgent_waiting

    def writer_threads(self, *, threads: int = 1, name: str = "db-writer") -> "WriterThreads":
        from common.writer_threads import WriterThreads

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


# execution option: prepare this statement on the server (`WriterThreads` on PostgreSQL), for a statement whose plan
# does not depend on its values
PREPARED = {"onenet_prepared": True}
