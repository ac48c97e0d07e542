"""The transactional outbox and its relay: batches, backoff, at-least-once, one delivery per event with two
relays on PostgreSQL."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import httpx
import pytest

from sqlalchemy import func, select

from common.clock import Clock, FrozenClock
from common.outbox import OutboxRelay, TypeFilter, record_event
from common.outbox_senders import HttpEventSender
from svc_residents.base import OutboxEvent


async def _add(db, n, clock=None):
    async with db.session() as s, s.begin():
        for i in range(n):
            record_event(s, OutboxEvent, "test.happened", subject=f"s{i}", data={"i": i}, community="110105001001",
                         now=(clock or Clock()).now())


async def test_event_rolls_back_with_its_transaction(db):
    with pytest.raises(RuntimeError):
        async with db.session() as s, s.begin():
            record_event(s, OutboxEvent, "test.happened", subject="x", data={}, now=Clock().now())
            raise RuntimeError("the change failed")
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(OutboxEvent))).scalar() == 0


async def test_relay_delivers_in_batches_and_marks(db):
    await _add(db, 5)
    batches = []

    async def send(events):
        batches.append(events)

    relay = OutboxRelay(db, OutboxEvent, source="svc_residents", send=send, batch_size=2)
    assert [await relay.run_once() for _ in range(4)] == [2, 2, 1, 0]
    sent = [e for b in batches for e in b]
    assert [e["data"]["i"] for e in sent] == [0, 1, 2, 3, 4]
    assert sent[0]["source"] == "svc_residents" and sent[0]["community"] == "110105001001"
    assert datetime.fromisoformat(sent[0]["occurred_at"]).tzinfo is not None
    assert (await relay.measure())[0] == 0


async def test_relay_backs_off_then_delivers_everything_once(db):
    clock = FrozenClock(datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc))
    await _add(db, 3, clock)
    delivered: dict[str, int] = {}
    down = True

    async def send(events):
        if down:
            raise ConnectionError("svc_metrics is down")
        for e in events:
            delivered[e["event_id"]] = delivered.get(e["event_id"], 0) + 1

    relay = OutboxRelay(db, OutboxEvent, source="t", send=send, base_backoff=1, max_backoff=8, clock=clock)
    assert await relay.run_once() == 0
    assert await relay.run_once() == 0  # not due yet: backing off, not hammering
    pending, _ = await relay.measure()
    assert pending == 3
    clock.advance(seconds=1)
    assert await relay.run_once() == 0  # second failure doubles the wait
    async with db.session() as s:
        row = (await s.execute(select(OutboxEvent).limit(1))).scalar_one()
        assert row.attempts == 2 and row.last_error
    down = False
    clock.advance(seconds=2)
    assert await relay.run_once() == 3
    assert sorted(delivered.values()) == [1, 1, 1]


async def test_http_sender_posts_batch_with_token(db):
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers.get("authorization")
        seen["body"] = request.read()
        return httpx.Response(202, json={"accepted": 1})

    async def token():
        return "tok"

    sender = HttpEventSender("http://metrics/metrics/v1/events", token, transport=httpx.MockTransport(handler))
    await _add(db, 1)
    relay = OutboxRelay(db, OutboxEvent, source="t", send=sender)
    assert await relay.run_once() == 1
    await sender.aclose()
    assert seen["auth"] == "Bearer tok" and b'"events"' in seen["body"]


async def test_two_relays_deliver_each_event_once(db, backend):
    if backend != "postgresql":
        pytest.skip("row locks with SKIP LOCKED are a PostgreSQL feature; SQLite runs one relay")
    await _add(db, 200)
    counts: dict[str, int] = {}

    async def send(events):
        await asyncio.sleep(0.01)  # hold the claimed rows while the other relay looks
        for e in events:
            counts[e["event_id"]] = counts.get(e["event_id"], 0) + 1

    relays = [OutboxRelay(db, OutboxEvent, source="t", send=send, batch_size=10) for _ in range(2)]

    async def drain(relay):
        while True:
            if await relay.run_once() == 0:
                pending, _ = await relay.measure()
                if pending == 0:
                    return
                await asyncio.sleep(0.01)

    await asyncio.gather(*(drain(r) for r in relays))
    assert len(counts) == 200 and set(counts.values()) == {1}


async def test_delivered_rows_past_retention_are_deleted_pending_ones_never(db):
    from datetime import timedelta

    from sqlalchemy import update

    now = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
    clock = FrozenClock(now)
    await _add(db, 9, clock=FrozenClock(now - timedelta(days=30)))
    ids = [i for (i,) in (await _rows(db, select(OutboxEvent.id).order_by(OutboxEvent.id)))]
    async with db.session() as s, s.begin():  # 5 delivered 10 days ago, 2 yesterday, 2 never (a month old)
        await s.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids[:5]))
                        .values(delivered_at=now - timedelta(days=10)))
        await s.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids[5:7]))
                        .values(delivered_at=now - timedelta(days=1)))

    async def send(events):
        raise AssertionError("nothing is pending for this relay's clock")

    keep = OutboxRelay(db, OutboxEvent, source="svc_residents", send=send, clock=clock)
    assert await keep.purge() == 0  # no retention: kept
    other = OutboxRelay(db, OutboxEvent, source="svc_residents", send=send, clock=clock,
                        retention=timedelta(days=7), types=TypeFilter(include=("other.",)))
    assert await other.purge() == 0  # another relay's types are not its to delete
    relay = OutboxRelay(db, OutboxEvent, source="svc_residents", send=send, clock=clock, retention=timedelta(days=7))
    assert await relay.purge(chunk=2) == 5  # in chunks, until none is left
    left = await _rows(db, select(OutboxEvent.id, OutboxEvent.delivered_at).order_by(OutboxEvent.id))
    assert [i for i, _ in left] == ids[5:] and sum(d is None for _, d in left) == 2
    assert await relay.purge() == 0
    # in the relay's loop: at most once a minute
    async with db.session() as s, s.begin():
        await s.execute(update(OutboxEvent).where(OutboxEvent.id == ids[5])
                        .values(delivered_at=now - timedelta(days=8)))
    await relay._purge_now_and_then()
    await relay._purge_now_and_then()
    assert len(await _rows(db, select(OutboxEvent.id))) == 3
    async with db.session() as s, s.begin():
        await s.execute(update(OutboxEvent).where(OutboxEvent.id == ids[6])
                        .values(delivered_at=now - timedelta(days=8)))
    await relay._purge_now_and_then()  # within the minute: not yet
    assert len(await _rows(db, select(OutboxEvent.id))) == 3


async def _rows(db, stmt):
    async with db.session() as s:
        return (await s.execute(stmt)).all()


async def test_a_failing_purge_is_logged_counted_and_delivery_goes_on(db, caplog):
    from datetime import timedelta

    from prometheus_client import REGISTRY

    def failures() -> float:
        labels = {"job": "outbox-purge/svc_residents", "outcome": "failed"}
        return REGISTRY.get_sample_value("onenet_background_runs_total", labels) or 0.0

    clock = FrozenClock(datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc))
    await _add(db, 2, clock=clock)
    sent = []

    async def send(events):
        sent.extend(events)

    relay = OutboxRelay(db, OutboxEvent, source="svc_residents", send=send, clock=clock, retention=timedelta(days=7))

    async def broken_purge(**_):
        raise RuntimeError("disk full")

    relay.purge = broken_purge
    before = failures()
    with caplog.at_level("ERROR", logger="onenet.periodic"):
        await relay._relay_once()
    assert failures() == before + 1
    assert any(r.exc_info and "disk full" in str(r.exc_info[1]) for r in caplog.records)
    assert len(sent) == 2  # the purge's failure did not stop delivery
