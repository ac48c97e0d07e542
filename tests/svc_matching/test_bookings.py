"""Bookings (issue 30): resources with opening hours from the working-day calendar, the rules a request must meet
(each refused with a problem naming the field, nothing written), the lifecycle table, approval, the waitlist in
order, no-show blocks, service appointments with their history, and 50 residents racing for the last place."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from common.clock import SHANGHAI, FrozenClock
from svc_matching.base import OutboxEvent
from svc_matching.bookings import lifecycle
from svc_matching.bookings.models import Booking, BookingSlot

XF = "110105001001"
HOURS = {"workday": ["09:00-12:00", "14:00-18:00"], "weekend": ["09:00-12:00"]}


def resident(auth, n: int):
    return auth(role="resident", scopes=[f"person:p-{n}"], user=f"u-p{n}")


def local(day_offset: int, hh: int, mm: int = 0, *, base: datetime) -> str:
    """An instant `day_offset` local days after `base`'s local date, at hh:mm Asia/Shanghai, as ISO-8601."""
    d = base.astimezone(SHANGHAI).date() + timedelta(days=day_offset)
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=SHANGHAI).isoformat()


def same(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


async def make_resource(client, headers, **over) -> dict:
    body = {"name": "幸福社区活动室", "kind": "activity_room", "place_code": XF, "opening_hours": HOURS,
            "slot_minutes": 60, "capacity": 1, "bookers": ["resident", "staff"], "advance_days": 14,
            "weekly_limit": 2, **over}
    r = await client.post("/matching/v1/bookable_resources", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def book(client, headers, resource, starts_at, **over):
    return await client.post("/matching/v1/bookings", headers=headers,
                             json={"resource_id": resource["id"], "starts_at": starts_at, **over})


async def move(client, headers, booking, action, **over):
    return await client.post(f"/matching/v1/bookings/{booking['id']}/transitions", headers=headers,
                             json={"action": action, "version": booking["version"], **over})


async def counts(client) -> tuple[int, int]:
    async with client.app.state.db.session() as s:
        return ((await s.execute(select(func.count()).select_from(Booking))).scalar_one(),
                (await s.execute(select(func.count()).select_from(OutboxEvent))).scalar_one())


def now_of(client) -> datetime:
    return client.app.state.clock.now()


async def test_book_a_room_read_it_and_its_timeline(client, staff, auth):
    res = await make_resource(client, staff)
    assert res["booker_scope"] == XF and res["approval_required"] is False
    now = now_of(client)                               # Monday 2026-11-23 09:00 Beijing
    r = await book(client, resident(auth, 1), res, local(1, 10, base=now), purpose="合唱排练")
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["state"] == "confirmed" and b["person_id"] == "p-1" and b["booker_kind"] == "resident"
    assert set(b["allowed_actions"]) == {"cancel", "reschedule"}
    slots = (await client.get(f"/matching/v1/bookable_resources/{res['id']}/slots",
                              params={"date": (now + timedelta(days=1)).astimezone(SHANGHAI).date().isoformat()},
                              headers=resident(auth, 2))).json()
    assert [s["free"] for s in slots] == [1, 0, 1, 1, 1, 1, 1]        # 09–12 and 14–18: seven one-hour slots
    detail = (await client.get(f"/matching/v1/bookings/{b['id']}", headers=resident(auth, 1))).json()
    assert [(e["action"], e["to_state"]) for e in detail["timeline"]] == [("request", "confirmed")]
    # another resident and another community's staff: as unknown; this community's staff see it
    assert (await client.get(f"/matching/v1/bookings/{b['id']}", headers=resident(auth, 2))).status_code == 404
    other = auth(role="community_staff", scopes=["community:110105001002"])
    assert (await client.get(f"/matching/v1/bookings/{b['id']}", headers=other)).status_code == 404
    assert (await client.get(f"/matching/v1/bookings/{b['id']}", headers=staff)).status_code == 200
    mine = (await client.get("/matching/v1/bookings", headers=resident(auth, 1))).json()["items"]
    assert [x["id"] for x in mine] == [b["id"]]
    assert (await client.get("/matching/v1/bookings", headers=resident(auth, 2))).json()["items"] == []
    assert (await client.get("/matching/v1/bookings", headers=other)).json()["items"] == []
    async with client.app.state.db.session() as s:
        types = list((await s.execute(select(OutboxEvent.type).order_by(OutboxEvent.id))).scalars())
    assert types == ["bookable_resource.listed", "booking.requested", "notice.booking.confirmed"]


async def test_bad_requests_are_refused_naming_the_field_and_write_nothing(client, staff, auth):
    res = await make_resource(client, staff, weekly_limit=2, capacity=5)
    now = now_of(client)
    me = resident(auth, 1)
    assert (await book(client, me, res, local(1, 9, base=now))).status_code == 201
    assert (await book(client, me, res, local(2, 9, base=now))).status_code == 201
    before = await counts(client)
    cases = {
        "booking.in_past": local(0, 8, base=now),                  # 08:00 today: an hour ago
        "booking.closed": local(1, 12, 30, base=now),              # lunch break
        "booking.too_far_ahead": local(15, 10, base=now),
        "booking.weekly_limit": local(3, 10, base=now),            # a third booking this week
        "booking.overlaps_own": local(1, 9, base=now),             # the same hour again
    }
    for code, starts_at in cases.items():
        r = await book(client, me, res, starts_at)
        assert r.status_code == 422, (code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        err = r.json()["errors"][0]
        assert (err["field"], err["code"]) == ("starts_at", code), r.text
    r = await book(client, me, res, local(1, 9, 30, base=now))       # not a slot's start
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "booking.closed"
    r = await client.post("/matching/v1/bookings", headers=me, json={"resource_id": res["id"], "starts_at": "2026-11-24T10:00:00"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("starts_at")  # no offset
    r = await book(client, me, {"id": "nope"}, local(1, 10, base=now))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "resource_id"
    assert await counts(client) == before
    # next week counts on its own (weeks run Monday to Sunday, Beijing time)
    assert (await book(client, me, res, local(7, 10, base=now))).status_code == 201


async def test_own_overlap_spans_resources_and_weekly_limit_is_per_resource(client, staff, auth):
    room = await make_resource(client, staff, capacity=3)
    hall = await make_resource(client, staff, name="多功能厅", slot_minutes=120, capacity=3,
                               opening_hours={"workday": ["09:00-17:00"]})
    now = now_of(client)
    me = resident(auth, 3)
    assert (await book(client, me, hall, local(1, 9, base=now))).status_code == 201   # 09–11
    r = await book(client, me, room, local(1, 10, base=now))                          # 10–11 overlaps
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "booking.overlaps_own"
    assert (await book(client, me, room, local(1, 11, base=now))).status_code == 201


async def test_holidays_and_make_up_working_days_come_from_the_calendar(service_client, auth):
    client = await service_client("svc_matching", offer_sweeper_enabled=False)
    from tests.svc_matching.conftest import PERSONS, place_persons
    client.app.state.clock = FrozenClock(datetime(2026, 9, 18, 1, 0, tzinfo=timezone.utc))   # Friday 09:00
    await place_persons(client, PERSONS)
    staff = auth(role="community_staff", scopes=[f"community:{XF}"])
    res = await make_resource(client, staff, advance_days=30, capacity=3, closed_dates=["2026-09-22"],
                              opening_hours={"workday": ["14:00-18:00"], "weekend": ["09:00-12:00"]})
    me = resident(auth, 1)
    # Sunday 20 September 2026 is a make-up working day (调休): workday hours, not weekend ones
    r = await book(client, me, res, "2026-09-20T09:00:00+08:00")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "booking.closed"
    assert (await book(client, me, res, "2026-09-20T14:00:00+08:00")).status_code == 201
    # 1 October (National Day) is a holiday: no holiday hours set, closed; a closed date of the resource too
    for at in ("2026-10-01T09:00:00+08:00", "2026-10-01T14:00:00+08:00", "2026-09-22T14:00:00+08:00"):
        r = await book(client, me, res, at)
        assert r.status_code == 422 and r.json()["errors"][0]["code"] == "booking.closed", at
    slots = (await client.get(f"/matching/v1/bookable_resources/{res['id']}/slots",
                              params={"date": "2026-09-19", "days": 2}, headers=me)).json()
    # Saturday 19th: weekend hours (09–12); Sunday 20th (调休): workday hours (14–18), one place taken above
    assert [(s["starts_at"][:16], s["free"]) for s in slots] == [
        ("2026-09-19T01:00", 3), ("2026-09-19T02:00", 3), ("2026-09-19T03:00", 3),
        ("2026-09-20T06:00", 2), ("2026-09-20T07:00", 3), ("2026-09-20T08:00", 3), ("2026-09-20T09:00", 3)]
    # 25–27 September, the Mid-autumn Festival: holidays, closed though 26th and 27th are a weekend
    assert (await client.get(f"/matching/v1/bookable_resources/{res['id']}/slots",
                             params={"date": "2026-09-25", "days": 3}, headers=me)).json() == []


async def test_waitlist_promotes_in_order_when_a_place_frees(client, staff, auth):
    res = await make_resource(client, staff, capacity=1)
    at = local(2, 15, base=now_of(client))
    first = (await book(client, resident(auth, 1), res, at)).json()
    r = await book(client, resident(auth, 2), res, at)
    assert r.status_code == 409 and r.json()["code"] == "booking.slot_full"
    nxt = r.json()["next_free_slots"]
    assert same(nxt[0]["starts_at"], local(2, 16, base=now_of(client))) and nxt[0]["free"] == 1 and len(nxt) == 5
    w2 = (await book(client, resident(auth, 2), res, at, waitlist=True)).json()
    client.app.state.clock.advance(seconds=1)
    w3 = (await book(client, resident(auth, 3), res, at, waitlist=True)).json()
    assert w2["state"] == w3["state"] == "waitlisted"
    r = await move(client, resident(auth, 1), first, "cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    got = {n: (await client.get(f"/matching/v1/bookings/{b['id']}", headers=staff)).json() for n, b in
           (("w2", w2), ("w3", w3))}
    assert got["w2"]["state"] == "confirmed" and got["w3"]["state"] == "waitlisted"
    assert [e["action"] for e in got["w2"]["timeline"]] == ["request", "promote"]
    r = await move(client, resident(auth, 2), got["w2"], "cancel")
    assert (await client.get(f"/matching/v1/bookings/{w3['id']}", headers=staff)).json()["state"] == "confirmed"
    async with client.app.state.db.session() as s:
        assert (await s.execute(select(BookingSlot.taken))).scalar_one() == 1


async def test_approval_check_in_and_the_lifecycle_table(client, staff, auth):
    res = await make_resource(client, staff, approval_required=True, capacity=2)
    now = now_of(client)
    me = resident(auth, 4)
    b = (await book(client, me, res, local(0, 10, base=now))).json()
    assert b["state"] == "pending_approval"
    r = await move(client, me, b, "approve")
    assert r.status_code == 403 and r.json()["code"] == "booking.not_allowed"
    r = await move(client, staff, b, "check_in")
    assert r.status_code == 409 and r.json()["allowed_actions"] == ["approve", "reject", "cancel", "reschedule"]
    r = await move(client, staff, b, "reject")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "note"
    b = (await move(client, staff, b, "approve")).json()
    assert b["state"] == "confirmed"
    r = await move(client, staff, {**b, "version": 1}, "check_in")
    assert r.status_code == 409 and r.json()["current_version"] == 2
    r = await move(client, staff, b, "check_in")                  # 09:00, the slot is at 10:00: too early
    assert r.status_code == 409 and r.json()["code"] == "booking.check_in_window"
    client.app.state.clock.advance(minutes=40)
    b = (await move(client, staff, b, "check_in")).json()
    b = (await move(client, staff, b, "complete")).json()
    assert b["state"] == "completed" and b["allowed_actions"] == []
    entries = (await client.get(f"/matching/v1/bookings/{b['id']}", headers=me)).json()["timeline"]
    assert [(e["action"], e["from_state"], e["to_state"]) for e in entries] == [
        ("request", None, "pending_approval"), ("approve", "pending_approval", "confirmed"),
        ("check_in", "confirmed", "checked_in"), ("complete", "checked_in", "completed")]
    for (state, action), rule in lifecycle.TRANSITIONS.items():   # the table only leads to declared states
        assert rule.to is None or rule.to in lifecycle.STATES


async def test_three_no_shows_block_booking_for_thirty_days(client, staff, auth):
    res = await make_resource(client, staff, capacity=5, weekly_limit=10, no_show_limit=3, no_show_block_days=30)
    me = resident(auth, 5)
    clock = client.app.state.clock
    for day in (0, 1, 2):
        b = (await book(client, me, res, local(day, 10, base=clock.now()) if day == 0 else
                        local(1, 10, base=clock.now()))).json()
        assert b["state"] == "confirmed", b
        r = await move(client, staff, b, "no_show")
        assert r.status_code == 409 and r.json()["code"] == "booking.not_started"
        clock.set(datetime.fromisoformat(b["starts_at"]) + timedelta(minutes=20))
        assert (await move(client, staff, b, "no_show")).json()["state"] == "no_show"
    blocked_at = clock.now()
    r = await book(client, me, res, local(1, 10, base=clock.now()))
    assert r.status_code == 403 and r.json()["code"] == "booking.blocked"
    assert datetime.fromisoformat(r.json()["blocked_until"]) == blocked_at + timedelta(days=30)
    assert (await book(client, resident(auth, 6), res, local(1, 10, base=clock.now()))).status_code == 201
    clock.advance(days=30, seconds=1)
    assert (await book(client, me, res, local(1, 10, base=clock.now()))).status_code == 201


async def test_who_may_book(client, staff, auth):
    res = await make_resource(client, staff, bookers=["resident"], booker_scope="110105001001001", capacity=5)
    at = local(1, 10, base=now_of(client))
    from tests.svc_matching.conftest import place_persons
    await place_persons(client, {"p-ak": "110105001002001"})
    assert (await book(client, auth(role="resident", scopes=["person:p-ak"]), res, at)).json()["code"] == \
        "booking.not_eligible"
    assert (await book(client, staff, res, at)).json()["code"] == "booking.not_eligible"   # staff not a booker
    for role in (dict(role="dept_staff", scopes=["dept:minzheng"]), dict(role="evaluator"),
                 dict(role="system", user="kiosk", member="kiosk"), dict(role="provider", scopes=["provider:o-1"])):
        r = await book(client, auth(**role), res, at)
        assert r.status_code == 403, (role, r.text)
    r = await book(client, resident(auth, 1), res, at, person_id="p-2")
    assert r.status_code == 403 and r.json()["code"] == "booking.not_own"
    proxy = auth(role="proxy", acting_for="p-2", user="u-proxy")
    assert (await book(client, proxy, res, at)).json()["person_id"] == "p-2"
    # setting a resource up is for the place's staff
    for who in (resident(auth, 1), auth(role="community_staff", scopes=["community:110105001002"]),
                auth(role="grid_worker", scopes=["grid:110105001001001"])):
        r = await client.post("/matching/v1/bookable_resources", headers=who, json={
            "name": "x", "kind": "meeting_room", "place_code": XF, "opening_hours": HOURS, "slot_minutes": 60,
            "capacity": 1, "bookers": ["resident"]})
        assert r.status_code == 403
    r = await client.post("/matching/v1/bookable_resources", headers=staff, json={
        "name": "x", "kind": "meeting_room", "place_code": XF, "opening_hours": {"workday": ["12:00-09:00"]},
        "slot_minutes": 60, "capacity": 1, "bookers": ["resident"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("opening_hours")


async def test_fifty_residents_race_for_the_last_place(client, staff, auth):
    from tests.svc_matching.conftest import place_persons

    await place_persons(client, {f"r-{i}": "110105001001001" for i in range(50)})
    res = await make_resource(client, staff, capacity=3, weekly_limit=5)
    at = local(1, 14, base=now_of(client))
    for n in (1, 2):                                            # two of three places already gone
        assert (await book(client, resident(auth, n), res, at)).status_code == 201
    before = await counts(client)
    results = await asyncio.gather(*(book(client, auth(role="resident", scopes=[f"person:r-{i}"]), res, at)
                                     for i in range(50)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 49, codes
    for r in results:
        if r.status_code == 409:
            body = r.json()
            assert body["code"] == "booking.slot_full"
            assert same(body["next_free_slots"][0]["starts_at"], local(1, 15, base=now_of(client)))
    async with client.app.state.db.session() as s:
        taken = (await s.execute(select(BookingSlot.taken).where(BookingSlot.starts_at == datetime.fromisoformat(at))
                                 )).scalar_one()
        held = (await s.execute(select(func.count()).select_from(Booking).where(
            Booking.state.in_(lifecycle.HOLDING)))).scalar_one()
        conflicts = (await s.execute(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type == "booking.conflicted"))).scalar_one()
    assert taken == held == 3 and conflicts == 49
    assert (await counts(client))[0] == before[0] + 1


async def test_one_person_firing_at_once_stays_within_the_weekly_limit(client, staff, auth):
    res = await make_resource(client, staff, capacity=50, weekly_limit=2)
    now = now_of(client)
    me = resident(auth, 10)
    results = await asyncio.gather(*(book(client, me, res, local(1 + i % 4, 10 + i // 4, base=now))
                                     for i in range(12)))
    assert sorted(r.status_code for r in results) == [201, 201] + [422] * 10


async def test_an_organisation_books_where_organisations_may(client, staff, auth):
    """A resource open to organisations: a provider books for its (registered) organisation, within the weekly
    limit per organisation; the booking is the organisation's record (another provider: 404 as unknown)."""
    from tests.svc_matching.conftest import USCC, make_org

    org, _ = await make_org(client, staff)
    other, _ = await make_org(client, staff, uscc=USCC[1], name="安康社工服务站")
    res = await make_resource(client, staff, bookers=["organisation"], capacity=2, weekly_limit=1)
    now = now_of(client)
    mine = auth(role="provider", scopes=[f"provider:{org['id']}"], user="u-org")
    r = await book(client, mine, res, local(1, 10, base=now), purpose="社工小组活动")
    assert r.status_code == 201, r.text
    b = r.json()
    assert (b["booker_kind"], b["organization_id"], b["person_id"]) == ("organisation", org["id"], None)
    assert set(b["allowed_actions"]) == {"cancel", "reschedule"}
    r = await book(client, mine, res, local(2, 10, base=now))
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "booking.weekly_limit"
    theirs = auth(role="provider", scopes=[f"provider:{other['id']}"], user="u-other")
    assert (await book(client, theirs, res, local(1, 10, base=now))).status_code == 201   # its own limit
    assert (await client.get(f"/matching/v1/bookings/{b['id']}", headers=theirs)).status_code == 404
    assert [x["id"] for x in (await client.get("/matching/v1/bookings", headers=mine)).json()["items"]] == [b["id"]]
    assert (await client.get(f"/matching/v1/bookings/{b['id']}", headers=staff)).status_code == 200
    before = await counts(client)
    for who, over in ((mine, {"person_id": "p-1"}),                                     # not for a person
                      (auth(role="provider", scopes=["provider:o-unregistered"]), {}),  # not in the directory
                      (resident(auth, 1), {})):                                         # residents may not
        r = await book(client, who, res, local(3, 10, base=now), **over)
        assert r.status_code == 403 and r.json()["code"] == "booking.not_eligible", r.text
    assert await counts(client) == before
    r = await move(client, mine, b, "cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
