"""Urgent feeds (ADR 0022): a relay made with `wake_on_commit` delivers the rows of its types right after the
commit that wrote them (an ORM session through `record_event`, or a writer without the ORM through `wake_relays`)
instead of at its next poll; a relay without it, or rows of other types, or a rolled-back transaction, wake
nothing. The poll here is an hour, so a delivery at all proves the wake-up; the claims, order and retries are the
relay's usual ones (tests/common/test_outbox.py)."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert

from common.clock import Clock
from common.outbox import OutboxRelay, TypeFilter, event_row, record_event, wake_relays
from svc_residents.base import OutboxEvent

HOUR = 3600.0


class Inbox:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.arrived = asyncio.Event()

    async def __call__(self, events: list[dict]) -> None:
        self.events.extend(events)
        self.arrived.set()

    async def next(self, timeout: float = 10.0) -> list[str]:
        await asyncio.wait_for(self.arrived.wait(), timeout)
        self.arrived.clear()
        return [e["type"] for e in self.events]


async def running(relay: OutboxRelay, stop: asyncio.Event) -> asyncio.Task:
    task = asyncio.create_task(relay.run_forever(stop))
    await asyncio.sleep(0.2)  # its first pass (nothing pending) done, it waits its hour
    return task


async def test_a_commit_wakes_the_urgent_relay_of_its_rows_only(db):
    urgent, slow = Inbox(), Inbox()
    stop = asyncio.Event()
    relays = [OutboxRelay(db, OutboxEvent, source="t", send=urgent, poll_seconds=HOUR,
                          types=TypeFilter(include=("alarm.",)), wake_on_commit=True),
              OutboxRelay(db, OutboxEvent, source="t", send=slow, poll_seconds=HOUR,
                          types=TypeFilter(exclude=("alarm.",)))]
    tasks = [await running(r, stop) for r in relays]
    try:
        with pytest.raises(RuntimeError):  # rolled back: no row, and no pass is owed
            async with db.session() as s, s.begin():
                record_event(s, OutboxEvent, "alarm.raised", subject="a0", data={}, now=Clock().now())
                raise RuntimeError("the alarm's transaction failed")
        async with db.session() as s, s.begin():
            record_event(s, OutboxEvent, "alarm.raised", subject="a1", data={}, now=Clock().now())
            record_event(s, OutboxEvent, "person.created", subject="p1", data={}, now=Clock().now())
        assert await urgent.next() == ["alarm.raised"]
        # a writer without the ORM (svc_services' intake) wakes it after its own commit
        async with db.engine.begin() as conn:
            await conn.execute(insert(OutboxEvent), [event_row("alarm.raised", subject="a2", data={},
                                                               now=Clock().now())])
        wake_relays(db, {"alarm.raised"})
        assert await urgent.next() == ["alarm.raised", "alarm.raised"]
        await asyncio.sleep(0.1)
        assert slow.events == []  # not urgent: its person.created waits for the poll
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    wake_relays(db, {"alarm.raised"})  # stopped relays are forgotten: nothing to wake, nothing fails
