"""The emergency lane (`OutboxRelay(own_loop=True)`, common/outbox_lane.py): an urgent relay's passes run on a
thread and event loop of their own, so its rows go out while the service's own loop is saturated and a bulk
relay sits on a backlog; a failed delivery is kept and delivered by the next relay (a restarted process), once.

The service's loop is "saturated" here by blocking it outright (a synchronous wait): a relay on that loop could
deliver nothing until it is released, so a delivery seen meanwhile is the lane's. Both databases."""
from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, insert, select

from common.clock import FrozenClock
from common.db import Database
from common.outbox import OutboxRelay, TypeFilter, event_row, wake_relays
from svc_residents.base import OutboxEvent

HOUR = 3600.0
BACKLOG = 1_000


class Inbox:
    """A subscriber that notes what it got, from whichever thread the relay runs on."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[dict] = []
        self.got = threading.Event()
        self.fail = fail
        self.threads: set[str] = set()
        self.closed = False

    async def __call__(self, events: list[dict]) -> None:
        self.threads.add(threading.current_thread().name)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("the subscriber is down")
        self.events.extend(events)
        self.got.set()

    async def aclose(self) -> None:
        self.closed = True


async def _insert(db: Database, rows: list[dict]) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(insert(OutboxEvent), rows)


async def _started(relay: OutboxRelay, stop: asyncio.Event) -> asyncio.Task:
    task = asyncio.create_task(relay.run_forever(stop))
    for _ in range(200):  # until its loop is up and its first (empty) pass is over
        await asyncio.sleep(0.05)
        if relay._loop is not None and (relay._lane is not None or not relay.own_loop):
            break
    await asyncio.sleep(0.3)
    return task


async def test_an_emergency_row_overtakes_a_bulk_backlog_while_the_loop_is_busy(db):
    clock = FrozenClock(datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc))
    urgent, bulk = Inbox(), Inbox()
    stop = asyncio.Event()
    lane = OutboxRelay(db, OutboxEvent, source="t", send=urgent, poll_seconds=HOUR, clock=clock,
                       types=TypeFilter(include=("emergency.",)), wake_on_commit=True, own_loop=True)
    slow = OutboxRelay(db, OutboxEvent, source="t", send=bulk, poll_seconds=HOUR, batch_size=200, clock=clock,
                       types=TypeFilter(exclude=("emergency.",)))
    tasks = [await _started(lane, stop), await _started(slow, stop)]
    try:
        await _insert(db, [event_row("notice.request.accepted", subject=f"n{i}", data={}, now=clock.now())
                           for i in range(BACKLOG)])
        await _insert(db, [event_row("emergency.changed", subject="r1", data={"version": 1}, now=clock.now())])
        # woken from a thread other than the lane's (svc_services' intake writer wakes it from its writer thread),
        # then this loop is blocked: the bulk relay on it delivers nothing meanwhile
        threading.Thread(target=wake_relays, args=(db, {"emergency.changed"})).start()
        assert urgent.got.wait(timeout=30), "the emergency row waited for the service's loop"
        assert bulk.events == []  # the backlog is still all there: the emergency went ahead of it
        assert [e["subject"] for e in urgent.events] == ["r1"]
        assert urgent.threads == {"outbox-lane/t"}
        slow.wake()
        for _ in range(600):  # released, the loop's bulk relay works off its backlog (a full batch: again at once)
            await asyncio.sleep(0.05)
            if len(bulk.events) >= BACKLOG:
                break
        assert len(bulk.events) == BACKLOG
        async with db.session() as s:
            pending = (await s.execute(select(func.count()).select_from(OutboxEvent)
                                       .where(OutboxEvent.delivered_at.is_(None)))).scalar_one()
        assert pending == 0  # the lane marked its row through connections of its own
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert urgent.closed  # its sender closed on the lane's loop
    wake_relays(db, {"emergency.changed"})  # a stopped lane is forgotten: nothing to wake, nothing fails


async def test_a_failed_emergency_delivery_is_kept_and_the_next_relay_delivers_it_once(db):
    clock = FrozenClock(datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc))
    down, up = Inbox(fail=10), Inbox()
    await _insert(db, [event_row("emergency.changed", subject="r2", data={"version": 1}, now=clock.now())])
    stop = asyncio.Event()
    first = OutboxRelay(db, OutboxEvent, source="t", send=down, poll_seconds=0.05, clock=clock,
                        types=TypeFilter(include=("emergency.",)), wake_on_commit=True, own_loop=True)
    task = await _started(first, stop)
    stop.set()
    await task  # the process ends with the row undelivered
    assert down.threads == {"outbox-lane/t"} and down.events == []
    async with db.session() as s:
        row = (await s.execute(select(OutboxEvent).where(OutboxEvent.subject == "r2"))).scalar_one()
    assert row.delivered_at is None and row.attempts >= 1 and "down" in row.last_error

    clock.advance(minutes=5)  # past its backoff
    stop = asyncio.Event()
    second = OutboxRelay(db, OutboxEvent, source="t", send=up, poll_seconds=0.05, clock=clock,
                         types=TypeFilter(include=("emergency.",)), wake_on_commit=True, own_loop=True)
    task = await _started(second, stop)
    try:
        assert up.got.wait(timeout=30)
        await asyncio.sleep(0.3)  # more passes: nothing is sent twice
    finally:
        stop.set()
        await task
    assert [e["subject"] for e in up.events] == ["r2"]
    async with db.session() as s:
        row = (await s.execute(select(OutboxEvent).where(OutboxEvent.subject == "r2"))).scalar_one()
    assert row.delivered_at is not None


async def test_a_cancelled_lane_ends_its_thread(db):
    stop = asyncio.Event()
    relay = OutboxRelay(db, OutboxEvent, source="t", send=Inbox(), poll_seconds=HOUR,
                        types=TypeFilter(include=("emergency.",)), wake_on_commit=True, own_loop=True)
    task = await _started(relay, stop)
    assert [t for t in threading.enumerate() if t.name == "outbox-lane/t"]
    task.cancel()  # as create_service_app's shutdown does after its grace
    with pytest.raises(asyncio.CancelledError):
        await task
    lanes = [t for t in threading.enumerate() if t.name == "outbox-lane/t"]
    for t in lanes:  # it has settled the task and returns
        await asyncio.to_thread(t.join, 10)
    assert not any(t.is_alive() for t in lanes)
