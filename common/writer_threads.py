"""Whole transactions on dedicated threads through a blocking driver of a service's database (the standard
library's sqlite3, or psycopg): for the few writers whose every statement crossing to and from a busy event loop
cost more than the statement (svc_services' intake, ADR 0011)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import create_engine as create_blocking_engine
from sqlalchemy import event
from sqlalchemy.engine import make_url

from common.db import PREPARED, json_column_text, normalise_url, sqlite_pragmas

T = TypeVar("T")


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
__all__ = ["PREPARED", "CancelledWhileWriting", "WriterThreads", "blocking_url"]


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
