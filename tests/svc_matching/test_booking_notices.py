"""Booking and sign-up reminders (issue 30): the scan under the injected clock writes one `notice.` reminder per
booking or sign-up, at 18:00 Asia/Shanghai the evening before (or 2 h before when booked after that), once even
when two scans race, never for a cancelled one; a rescheduled booking is reminded of its new time."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from svc_matching.base import OutboxEvent
from svc_matching.bookings.reminders import remind_due
from tests.svc_matching.test_activities import make_activity, sign
from tests.svc_matching.test_bookings import book, local, make_resource, move, now_of, resident


async def scan(client) -> int:
    async with client.app.state.db.session() as s, s.begin():
        return await remind_due(s, client.app.state.clock.now())


async def reminders(client) -> list[tuple[str, str]]:
    async with client.app.state.db.session() as s:
        rows = (await s.execute(select(OutboxEvent).where(OutboxEvent.type.like("notice.%.reminder"))
                                .order_by(OutboxEvent.id))).scalars()
        return [(r.type, r.data["person_id"]) for r in rows]


async def test_reminders_the_evening_before_once_and_not_when_cancelled(client, staff, auth):
    clock = client.app.state.clock                      # Monday 09:00 Beijing
    res = await make_resource(client, staff, capacity=3, weekly_limit=5)
    tomorrow = local(1, 10, base=now_of(client))         # Tuesday 10:00
    b1 = (await book(client, resident(auth, 1), res, tomorrow)).json()
    b2 = (await book(client, resident(auth, 2), res, tomorrow)).json()
    b3 = (await book(client, resident(auth, 3), res, tomorrow)).json()
    assert (await move(client, resident(auth, 2), b2, "cancel")).status_code == 200
    b3 = (await move(client, staff, b3, "reschedule", starts_at=local(2, 10, base=now_of(client)))).json()
    clock.advance(hours=8, minutes=59)                  # 17:59: not yet
    assert await scan(client) == 0
    clock.advance(minutes=1)                            # 18:00 the evening before
    assert sorted(await asyncio.gather(scan(client), scan(client))) == [0, 1]   # two replicas at once
    assert await scan(client) == 0                      # once only
    assert await reminders(client) == [("notice.booking.reminder", "p-1")]
    clock.advance(days=1)                               # Tuesday 18:00: the rescheduled booking's evening
    assert await scan(client) == 1
    assert await reminders(client) == [("notice.booking.reminder", "p-1"), ("notice.booking.reminder", "p-3")]
    assert b1["state"] == "confirmed"


async def test_booked_after_the_evening_is_reminded_two_hours_before(client, staff, auth):
    clock = client.app.state.clock
    res = await make_resource(client, staff, capacity=2)
    clock.advance(hours=10)                             # Monday 19:00, after the evening before Tuesday
    await book(client, resident(auth, 1), res, local(1, 10, base=now_of(client)))
    assert await scan(client) == 0
    clock.advance(hours=12, minutes=59)                 # Tuesday 07:59
    assert await scan(client) == 0
    clock.advance(minutes=1)                            # 08:00: 2 h before
    assert await scan(client) == 1 and await scan(client) == 0


async def test_activity_sign_ups_are_reminded_once_not_when_cancelled(client, staff, auth):
    clock = client.app.state.clock
    start = now_of(client) + timedelta(days=1, hours=1)  # Tuesday 10:00
    a = await make_activity(client, staff, capacity=5, starts_at=start.isoformat(),
                            ends_at=(start + timedelta(hours=1)).isoformat())
    s1 = (await sign(client, resident(auth, 1), a)).json()
    s2 = (await sign(client, resident(auth, 2), a)).json()
    r = await client.post(f"/matching/v1/activities/{a['id']}/signups/{s2['id']}/cancel", headers=resident(auth, 2))
    assert r.status_code == 200, r.text
    clock.advance(hours=9)                              # Monday 18:00
    assert await scan(client) == 1 and await scan(client) == 0
    assert await reminders(client) == [("notice.signup.reminder", "p-1")]
    assert s1["state"] == "signed_up"
