"""common.writer_threads.WriterThreads: a whole transaction on a thread of its own, through the blocking driver of the same
database (sqlite3, psycopg). It commits what the function did, rolls back when it raises, never stops a
transaction halfway when the awaiting task is cancelled (the outcome is handed over), takes SQLite's write lock
at BEGIN, and keeps the service's plan_cache_mode on PostgreSQL."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text
from sqlalchemy.engine import make_url

from common.bulk_insert import RowsInsert
from common.db import PREPARED, Database, run_plan, run_plan_blocking
from common.writer_threads import CancelledWhileWriting, WriterThreads, blocking_url


def _wait(event: threading.Event, seconds: float = 10.0) -> None:
    """Wait for an Event in short relative sleeps: an Event's own timed wait sets an absolute deadline, which
    hangs under libfaketime (tests/shifted_dates.py)."""
    for _ in range(int(seconds / 0.005)):
        if event.is_set():
            return
        time.sleep(0.005)


meta = MetaData()
notes = Table("notes", meta, Column("id", Integer, primary_key=True), Column("body", String(40)))


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    yield database
    await database.dispose()


async def _count(db: Database) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(notes))).scalar_one()


def test_blocking_url_names_the_blocking_driver():
    assert make_url(blocking_url("sqlite+aiosqlite:///var/x.db")).drivername == "sqlite"
    assert make_url(blocking_url("sqlite:///var/x.db")).drivername == "sqlite"
    pg = make_url(blocking_url("postgresql+asyncpg://u:secret@db:5432/onenet"))
    assert (pg.drivername, pg.password, pg.database) == ("postgresql+psycopg", "secret", "onenet")


async def test_commits_on_its_own_thread_and_rolls_back_on_error(db):
    threads = db.writer_threads(name="test-writer")
    loop_thread = threading.get_ident()

    def write(conn, n):
        conn.execute(insert(notes), [{"id": i, "body": f"第{i}条"} for i in range(n)])
        return threading.get_ident()

    def write_then_fail(conn):
        conn.execute(insert(notes), [{"id": 100, "body": "不该留下"}])
        raise RuntimeError("boom")

    try:
        assert await threads.run(write, 3) != loop_thread
        assert await _count(db) == 3
        with pytest.raises(RuntimeError, match="boom"):
            await threads.run(write_then_fail)
        assert await _count(db) == 3  # rolled back whole
        # RowsInsert's blocking form stores what its async form stores
        await threads.run(lambda conn: RowsInsert(notes).blocking(conn, [{"id": 7, "body": "七"},
                                                                          {"id": 8, "body": None}]))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(select(notes.c.id, notes.c.body).where(notes.c.id >= 7))).all()
        assert sorted(rows) == [(7, "七"), (8, None)]
    finally:
        await threads.close()


async def test_cancelled_caller_gets_the_committed_outcome(db):
    """The awaiting task is cancelled while its transaction runs: the transaction is not cut off (it commits),
    and the cancellation carries what it returned, so the caller can still answer those it wrote."""
    threads = db.writer_threads()
    started, release = threading.Event(), threading.Event()

    def slow_write(conn):
        conn.execute(insert(notes), [{"id": 1, "body": "写完了"}])
        started.set()
        _wait(release)
        return "written"

    try:
        task = asyncio.create_task(threads.run(slow_write))
        await asyncio.to_thread(_wait, started)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the thread, not abandoned
        release.set()
        with pytest.raises(CancelledWhileWriting) as cancelled:
            await task
        assert cancelled.value.outcome == "written"
        assert isinstance(cancelled.value, asyncio.CancelledError)
        assert await _count(db) == 1
    finally:
        release.set()
        await threads.close()


async def test_sqlite_write_lock_is_taken_at_begin(tmp_path):
    """BEGIN IMMEDIATE: the transaction's reads and writes see one database state. While it has only read, another
    connection cannot start writing."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/lock.db")
    async with db.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    threads = db.writer_threads()
    inside, release = threading.Event(), threading.Event()

    def read_and_hold(conn):
        conn.execute(select(func.count()).select_from(notes)).scalar_one()
        inside.set()
        _wait(release)

    try:
        task = asyncio.create_task(threads.run(read_and_hold))
        await asyncio.to_thread(_wait, inside)
        other = sqlite3.connect(f"{tmp_path}/lock.db", timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
        release.set()
        await task
    finally:
        release.set()
        await threads.close()
        await db.dispose()


async def test_postgres_statements_are_planned_with_their_values_unless_prepared(db_url):
    """svc_services' force_custom_plan (ADR 0009) on the writer threads: the driver prepares no statement of its
    own accord, so each is planned with its values however often it runs; a statement executed with PREPARED
    is kept on the server and gets its generic plan (plan_cache_mode auto, as the foreign-key checks' lookups do).
    Any other mode is the connections' own."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL setting")

    def run(conn):
        for i in range(8):
            conn.execute(text("SELECT CAST(:n AS integer) + 1"), {"n": i})
            conn.exec_driver_sql("SELECT %(n)s::integer + 2", {"n": i}, execution_options=PREPARED)
        prepared = conn.exec_driver_sql("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one(), [tuple(r) for r in prepared]

    threads = WriterThreads(db_url, plan_cache_mode="force_custom_plan")
    try:
        mode, prepared = await threads.run(run)
    finally:
        await threads.close()
    assert mode == "auto"
    assert len(prepared) == 1, prepared  # the one asked for; the other, planned eight times with its values
    statement, generic, custom = prepared[0]
    assert "+ 2" in statement and custom == 5 and generic == 3
    for mode in ("auto", "force_generic_plan"):
        threads = WriterThreads(db_url, plan_cache_mode=mode)
        try:
            assert await threads.run(lambda conn: conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one()) == mode
        finally:
            await threads.close()


async def test_a_query_plan_runs_alike_on_both_drivers(db):
    """`run_plan` (async session or connection) and `run_plan_blocking` feed a plan the same rows."""

    def plan(limit):
        rows = yield select(notes.c.id).order_by(notes.c.id).limit(limit), None
        more = yield select(notes.c.body).where(notes.c.id.in_([r.id for r in rows])).order_by(notes.c.id), None
        return [r.body for r in more]

    async with db.engine.begin() as conn:
        await conn.execute(insert(notes), [{"id": i, "body": f"n{i}"} for i in range(5)])
    threads = db.writer_threads()
    try:
        async with db.session() as session:
            assert await run_plan(session, plan(3)) == ["n0", "n1", "n2"]
        assert await threads.run(lambda conn: run_plan_blocking(conn, plan(3))) == ["n0", "n1", "n2"]
    finally:
        await threads.close()


async def test_autocommit_commits_each_statement_on_its_own(db, backend):
    """`WriterThreads.autocommit` (PostgreSQL): each statement is committed on its own, seen at once by another
    connection, and a failing one takes nothing else back; the connection goes back to the pool transactional.
    On SQLite it refuses: there the write lock is taken at BEGIN."""
    threads = db.writer_threads()
    try:
        if backend == "sqlite":
            with pytest.raises(NotImplementedError):
                await threads.call(threads.autocommit, lambda conn: None)
            return
        seen_meanwhile: list[int] = []

        def write(conn):
            conn.execute(insert(notes), {"id": 1, "body": "one"})
            seen_meanwhile.append(asyncio.run_coroutine_threadsafe(_count(db), loop).result(10))
            conn.execute(insert(notes), {"id": 1, "body": "again"})  # fails: the first stays

        loop = asyncio.get_running_loop()
        with pytest.raises(Exception, match="duplicate key|unique"):
            await threads.call(threads.autocommit, write)
        assert seen_meanwhile == [1] and await _count(db) == 1
        # back in the pool as a transactional connection: a transaction still rolls back whole
        with pytest.raises(RuntimeError):
            await threads.run(lambda conn: (conn.execute(insert(notes), {"id": 2, "body": "two"}),
                                            (_ for _ in ()).throw(RuntimeError("undo"))))
        assert await _count(db) == 1
    finally:
        await threads.close()
