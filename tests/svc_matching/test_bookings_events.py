"""The indicators' events of bookings and activities (issue 30) are what svc_metrics ingests: every one written in
a full round of the flows passes svc_metrics' own batch validation (envelope, declared type, data, places), and
svc_metrics' derivations read from them the figures of the round (no-shows, room conflicts, used and open room
minutes, activities held)."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select

from common.outbox import event_payload
from svc_matching.base import OutboxEvent
from svc_metrics.events.service import as_ev, validate_batch
from svc_metrics.kpis.observations import derive
from tests.svc_matching.test_activities import check_in, make_activity, sign
from tests.svc_matching.test_bookings import book, local, make_resource, move, now_of, resident


async def full_round(client, staff, auth) -> list[OutboxEvent]:
    """Two bookings of a room (one conflicting, then waitlisted and promoted, used; the other rescheduled to 11:00
    and missed), a room with approval (one rejected, one approved then cancelled), an activity held and one
    cancelled. The outbox rows, in order."""
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
        return list((await s.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars())


async def test_every_booking_and_activity_event_is_ingestible(client, staff, auth):
    rows = await full_round(client, staff, auth)
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


async def test_svc_metrics_derives_the_rounds_figures_from_these_events(client, staff, auth):
    rows = [r for r in await full_round(client, staff, auth) if not r.type.startswith("notice.")]
    by_entity = defaultdict(list)
    for env, kind, eid in validate_batch([event_payload(r, "svc_matching") for r in rows], 10_000):
        by_entity[(kind, eid)].append(as_ev(env))
    obs = defaultdict(list)
    for (kind, _), evs in by_entity.items():
        for o in derive(kind, evs):
            obs[o.kpi].append(o)

    def sums(kpi: str) -> tuple[float, float]:
        return sum(o.num for o in obs[kpi]), sum(o.den for o in obs[kpi])

    # four room requests (the first, the waitlisted one, two with approval) and the one refused for a full slot
    assert sums("booking_attempt") == (1.0, 5.0)
    # of the two that reached their slot, the rescheduled one was missed, counted at its new start (11:00)
    assert sums("booking_no_show") == (1.0, 2.0)
    missed = next(o for o in obs["booking_no_show"] if o.num)
    assert missed.at == datetime.fromisoformat(local(0, 11, base=missed.at))
    assert sums("room_used") == (60.0, 0.0)                                 # the promoted booking, checked in
    listed = [r.data for r in rows if r.type == "bookable_resource.listed"]
    assert sorted(o.den for o in obs["room_open"]) == sorted(d["open_minutes_per_week"] * d["capacity"]
                                                             for d in listed)
    assert all(o.den > 0 and o.mode == "stock" and o.category == "activity_room" for o in obs["room_open"])
    held = [r.data for r in rows if r.type == "activity.published"][0]      # the second one was cancelled
    assert [(o.at, o.num) for o in obs["activities"]] == [(datetime.fromisoformat(held["starts_at"]), 1.0)]
