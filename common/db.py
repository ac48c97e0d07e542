"""Async SQLAlchemy per service: SQLite (WAL, foreign keys) by default, PostgreSQL through asyncpg in production."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import orjson
from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

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


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, json_serializer=json_column_text)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                               json_serializer=json_column_text)


class Database:
    """One engine and session factory for one service's database."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.engine = create_engine(self.url, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

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
