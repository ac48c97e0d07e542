"""The message log written by a child process (gateway/exchange/log_process.py): what the gateway deploys.

Real child processes on the test's database: batches committed and chained, a child killed after committing
but before answering (the batch is sent again and not written twice), a database that refuses (the records are
kept and the writer reports failing), and a clean shutdown.
"""
from __future__ import annotations

import asyncio
import shutil
import signal
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from common.db import Database
from common.ids import new_id
from tests.conftest import migrate_database
from gateway.base import OutboxEvent
from gateway.exchange.audit import AuditWriter, Exchange, verify_chain, write_batch
from gateway.exchange.log_process import LogProcess, LogProcessFailed
from gateway.exchange.models import MessageLog

AT = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)


def _calls(n: int, start: int = 0) -> list[Exchange]:
    return [Exchange(id=new_id(), at=AT + timedelta(seconds=start + i), member="community-xf", user="u1",
                     resource="renshe.insurance", owner="dept-renshe", purpose="养老核验", method="POST",
                     path="/departments/renshe/v1/queries", status=200 if i % 3 else 403, latency_ms=1.5 + i,
                     request_id=f"r{start + i}", request_hash="a" * 64, response_hash="b" * 64)
            for i in range(n)]


@pytest.fixture
async def log_db(db_url, sqlite_template):
    await migrate_database("gateway", db_url)
    db = Database(db_url)
    try:
        yield db, db_url
    finally:
        await db.dispose()


async def _counts(db: Database) -> tuple[int, int]:
    """Log rows, and the calls the `exchange.calls` events count (each logged call counted once)."""
    async with db.session() as s:
        rows = await s.scalar(select(func.count()).select_from(MessageLog))
        events = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == "exchange.calls"))).scalars().all()
    return rows, sum(e.data["count"] for e in events)


async def test_the_writer_process_commits_chained_batches_and_exits_at_shutdown(log_db):
    """Records go through the child and land as rows plus `exchange.calls` events, chained; stopping the writer
    flushes what is queued and ends the child, which a group-wide SIGINT / SIGTERM does not stop first."""
    db, url = log_db
    process = LogProcess(url)
    writer = AuditWriter(db, MessageLog, OutboxEvent, process=process)
    stop = asyncio.Event()
    running = asyncio.create_task(writer.run_forever(stop))
    for ex in _calls(700):  # more than one batch
        writer.record(ex)
    for _ in range(300):
        if not writer._pending:
            break
        await asyncio.sleep(0.05)
    assert not writer._pending and not writer.failing
    for ex in _calls(5, start=700):
        writer.record(ex)
    child = process.proc
    # Ctrl-C or the launcher's SIGTERM reach the whole process group: the child stays for the final flush
    child.send_signal(signal.SIGINT)
    child.send_signal(signal.SIGTERM)
    stop.set()
    await asyncio.wait_for(running, 30)
    assert child.returncode == 0 and process.proc is None and process.started == 1  # flushed, then it ended
    assert await _counts(db) == (705, 705)
    result = await verify_chain(db, MessageLog)
    assert result.ok and result.count == 705
    async with db.session() as s:
        first = (await s.execute(select(MessageLog).order_by(MessageLog.seq).limit(1))).scalar_one()
    assert first.request_id == "r0" and first.member == "community-xf" and first.status == 403


async def test_a_batch_committed_by_a_child_that_died_before_answering_is_not_written_twice(log_db):
    """The resend after a death is recognised by its row ids: the chain holds each call once."""
    db, url = log_db
    batch = _calls(10)
    assert await write_batch(db, MessageLog, OutboxEvent, batch) == 10  # what the dead child committed
    process = LogProcess(url)
    process._uncertain = True  # as after a child died mid-batch
    try:
        assert await process.write(batch + _calls(2, start=10)) == 2
        assert await process.write(_calls(3, start=12)) == 3  # no longer a resend
    finally:
        await process.aclose()
    assert await _counts(db) == (15, 15)
    assert (await verify_chain(db, MessageLog)).ok


async def test_a_killed_child_is_replaced_and_the_records_are_kept_until_written(log_db):
    """A child found dead at a flush is replaced at once; one that dies while a batch is out fails that flush
    (records kept, writer failing, the batch marked as a resend) and the next flush starts a new child."""
    db, url = log_db
    process = LogProcess(url)
    writer = AuditWriter(db, MessageLog, OutboxEvent, process=process)
    for ex in _calls(4):
        writer.record(ex)
    assert await writer.flush() == 4 and process.started == 1
    process.proc.kill()
    await process.proc.wait()
    writer.record(_calls(1, start=4)[0])
    assert await writer.flush() == 1 and process.started == 2
    process.proc.kill()  # not reaped yet: the batch goes out, and the answer never comes
    for ex in _calls(3, start=5):
        writer.record(ex)
    try:
        with pytest.raises(LogProcessFailed):
            await writer.flush()
        assert writer.failing and len(writer._pending) == 3 and process._uncertain
        assert await writer.flush() == 3 and not writer.failing and process.started == 3
    finally:
        await process.aclose()
    assert await _counts(db) == (8, 8)
    assert (await verify_chain(db, MessageLog)).count == 8


async def test_a_database_the_child_cannot_write_keeps_the_records_in_the_gateway(tmp_path, sqlite_template):
    """The child answers with the error; the batch stays queued in the gateway and is written once the
    database is back."""
    path = tmp_path / "gw.db"
    url = f"sqlite+aiosqlite:///{path}"
    db = Database(url)
    process = LogProcess(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/none.db")  # cannot be opened
    writer = AuditWriter(db, MessageLog, OutboxEvent, process=process)
    try:
        for ex in _calls(2):
            writer.record(ex)
        with pytest.raises(LogProcessFailed):
            await writer.flush()
        assert writer.failing and len(writer._pending) == 2 and process.proc is not None  # the child lives on
        await process.aclose()
        shutil.copy(sqlite_template, path)
        process.database_url = url
        assert await writer.flush() == 2 and not writer.failing
        assert await _counts(db) == (2, 2)
    finally:
        await process.aclose()
        await db.dispose()


def test_the_chain_hash_is_the_canonical_json_it_was_defined_with():
    """content_hash (orjson) hashes exactly json.dumps(sort_keys, ensure_ascii=False, compact) of the content,
    for any text and numbers: chains written before the change still verify."""
    import hashlib
    import json

    from hypothesis import given, settings, strategies as st

    from gateway.exchange.audit import CONTENT_FIELDS, _canonical_time, content_hash

    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)

    @settings(max_examples=300, deadline=None)
    @given(text, text, st.one_of(st.none(), text), st.integers(100, 599), st.floats(0, 1e6),
           st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)))
    def same(member, path, purpose, status, latency, at):
        values = {k: "x" for k in CONTENT_FIELDS} | {"member": member, "path": path, "purpose": purpose,
                                                    "status": status, "latency_ms": latency, "at": at}
        content = dict(values, at=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), latency_ms=f"{latency:.3f}")
        raw = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        assert _canonical_time(at) == content["at"]
        assert content_hash(values) == hashlib.sha256(raw.encode()).hexdigest()

    same()


def test_the_writers_own_hashing_and_stamps_agree_with_content_hash_and_sqlalchemy():
    """`chained_rows` hashes each row without content_hash's generic steps and writes the time as text itself:
    for any content, times in any offset included, its hashes are content_hash's over the row as
    `onenet audit verify` reads it back, chained, and its stamps are what SQLAlchemy stores on SQLite."""
    from hypothesis import given, settings, strategies as st

    from common.bulk_insert import sqlite_timestamp
    from gateway.exchange.audit import GENESIS, Exchange, chained_rows, content_hash

    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
    maybe = st.one_of(st.none(), text)
    offsets = st.sampled_from([timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-45))])
    exchange = st.builds(
        Exchange, id=text, at=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                                           timezones=offsets),
        member=text, user=text, resource=maybe, owner=maybe, purpose=maybe, method=text, path=text,
        status=st.integers(100, 599), latency_ms=st.floats(0, 1e6), request_id=maybe, request_hash=text,
        response_hash=text)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(exchange, min_size=1, max_size=5))
    def same(batch):
        rows, stamps = chained_rows(batch, GENESIS)
        prev = GENESIS
        for ex, row, stamp in zip(batch, rows, stamps):
            assert stamp == sqlite_timestamp(ex.at) == row[1]
            values = dict(zip(("id", "at", "member", "user", "resource", "owner", "purpose", "method", "path",
                               "status", "latency_ms", "request_id", "request_hash", "response_hash", "prev_hash"),
                              row[:15]), at=ex.at)
            assert values["prev_hash"] == prev
            assert row[15] == content_hash(values)
            prev = row[15]

    same()
