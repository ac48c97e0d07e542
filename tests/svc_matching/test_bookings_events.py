"""The indicators' events of bookings and activities (issue 30) are what svc_metrics ingests: every one written in
a full round of the flows passes svc_metrics' own batch validation (envelope, declared type, data, places)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from common.outbox import event_payload
from svc_matching.base import OutboxEvent
from svc_metrics.events.service import validate_batch
from tests.svc_matching.test_activities import check_in, make_activity, sign
from tests.svc_matching.test_bookings import book, local, make_resource, move, now_of, resident


async def test_every_booking_and_activity_event_is_ingestible(client, staff, auth):
    clock = client.app.state.clock
    res = await make_resource(client, staff, capacity=1, weekly_limit=5)
    at = local(0, 10, base=now_of(client))
    b1 = (await book(client, resident(auth, 1), res, at)).json()
    assert (await book(client, resident(auth, 2), res, at)).status_code == 409             # conflicted
    w = (await book(client, resident(auth, 2), res, at, waitlist=True)).json()
    b1 = (await move(client, resident(auth, 1), b1, "reschedule", starts_at=local(0, 11, base=now_of(client)))).json()
    clock.advance(minutes=65)                                                               # 10:05
    w = (await client.get(f"/matching/v1/bookings/{w['id']}", headers=staff)).json()
    w = (await move(client, staff, w, "check_in")).json()
    await move(client, staff, w, "complete")
    clock.advance(hours=1)                                                                  # 11:05
    await move(client, staff, b1, "no_show")
    approval = await make_resource(client, staff, approval_required=True, name="会议室")
    p = (await book(client, resident(auth, 3), approval, local(1, 9, base=now_of(client)))).json()
    await move(client, staff, p, "reject", note="当天已安排会议")
    p = (await book(client, resident(auth, 3), approval, local(1, 10, base=now_of(client)))).json()
    p = (await move(client, staff, p, "approve")).json()
    await move(client, resident(auth, 3), p, "cancel")

    a = await make_activity(client, staff, capacity=1,
                            starts_at=(now_of(client) + timedelta(hours=2)).isoformat(),
                            ends_at=(now_of(client) + timedelta(hours=3)).isoformat())
    s1 = (await sign(client, resident(auth, 1), a)).json()
    await sign(client, resident(auth, 2), a)
    await client.post(f"/matching/v1/activities/{a['id']}/signups/{s1['id']}/cancel", headers=resident(auth, 1))
    clock.advance(hours=1, minutes=30)
    assert (await check_in(client, staff, a, "p-2")).status_code == 201
    a2 = await make_activity(client, staff, points=0)
    await client.post(f"/matching/v1/activities/{a2['id']}/status", headers=staff,
                      json={"status": "cancelled", "version": 1, "reason": "天气"})

    async with client.app.state.db.session() as s:
        rows = list((await s.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars())
    # notice.* rows go to svc_residents' notifications, never to svc_metrics: the resident is told of what
    # happened to them, not of their own cancel or reschedule (tests/svc_matching/test_booking_notices.py)
    notices = [r.type for r in rows if r.type.startswith("notice.")]
    assert sorted(notices) == sorted(["notice.booking.confirmed", "notice.booking.promoted", "notice.booking.rejected",
                                      "notice.booking.approved", "notice.signup.confirmed",
                                      "notice.signup.promoted"]), notices
    rows = [r for r in rows if not r.type.startswith("notice.")]
    types = {r.type for r in rows}
    assert {"bookable_resource.listed", "booking.requested", "booking.conflicted", "booking.rescheduled",
            "booking.promoted", "booking.checked_in", "booking.completed", "booking.no_show", "booking.rejected",
            "booking.approved", "booking.cancelled", "activity.published", "activity.signed_up",
            "activity.signup_cancelled", "activity.promoted", "activity.checked_in", "activity.cancelled",
            "participation.recorded", "ledger.posted"} <= types, types
    accepted = validate_batch([event_payload(r, "svc_matching") for r in rows], 10_000)
    assert len(accepted) == len(rows)
    assert all(r.community == "110105001001" for r in rows if r.type.startswith(("booking.", "activity.")))
