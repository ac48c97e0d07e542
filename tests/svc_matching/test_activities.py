"""Activities (issue 30): publishing, eligibility, sign-up with a waitlist promoted in order, concurrent sign-ups
never over the capacity, check-in by staff or the kiosk crediting points or volunteer hours through the ledger
once, and the refusals (a cancelled activity, a check-in for someone who did not sign up) writing nothing."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from svc_matching.base import OutboxEvent
from svc_matching.activities.models import Activity
from svc_matching.timebank.models import Account, Posting
from tests.svc_matching.test_bookings import now_of, resident

XF = "110105001001"


async def make_activity(client, headers, **over) -> dict:
    now = now_of(client)
    body = {"title": "老年人智能手机课堂", "category": "education", "organiser_kind": "community", "place_code": XF,
            "venue": "幸福社区活动室", "starts_at": (now + timedelta(days=2)).isoformat(),
            "ends_at": (now + timedelta(days=2, hours=2)).isoformat(), "capacity": 2, "points": 5, **over}
    r = await client.post("/matching/v1/activities", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def sign(client, headers, activity, **body):
    return await client.post(f"/matching/v1/activities/{activity['id']}/signups", headers=headers, json=body)


async def check_in(client, headers, activity, person):
    return await client.post(f"/matching/v1/activities/{activity['id']}/checkins", headers=headers,
                             json={"person_id": person})


async def written(client) -> tuple[int, int]:
    async with client.app.state.db.session() as s:
        return ((await s.execute(select(func.count()).select_from(OutboxEvent))).scalar_one(),
                (await s.execute(select(func.count()).select_from(Posting))).scalar_one())


async def balance(client, person: str, unit: str) -> int:
    async with client.app.state.db.session() as s:
        acc = (await s.execute(select(Account).where(Account.owner_id == person, Account.unit == unit))
               ).scalar_one_or_none()
        return acc.balance if acc else 0


async def test_sign_up_waitlist_and_promotion_in_order(client, staff, auth):
    a = await make_activity(client, staff)
    assert a["taken"] == 0 and a["eligible_scope"] == XF
    s1 = (await sign(client, resident(auth, 1), a)).json()
    s2 = (await sign(client, resident(auth, 2), a)).json()
    s3 = (await sign(client, resident(auth, 3), a)).json()
    client.app.state.clock.advance(seconds=1)
    s4 = (await sign(client, resident(auth, 4), a)).json()
    assert [s["state"] for s in (s1, s2, s3, s4)] == ["signed_up", "signed_up", "waitlisted", "waitlisted"]
    r = await sign(client, resident(auth, 5), a, waitlist=False)
    assert r.status_code == 409 and r.json()["code"] == "activity.full"
    r = await sign(client, resident(auth, 1), a)
    assert r.status_code == 409 and r.json()["code"] == "activity.already_signed_up"
    r = await client.post(f"/matching/v1/activities/{a['id']}/signups/{s1['id']}/cancel", headers=resident(auth, 1))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    mine = (await client.get(f"/matching/v1/activities/{a['id']}/signups", headers=resident(auth, 3))).json()
    assert [(x["id"], x["state"]) for x in mine["items"]] == [(s3["id"], "signed_up")]   # first in line promoted
    every = (await client.get(f"/matching/v1/activities/{a['id']}/signups", headers=staff)).json()["items"]
    assert {x["id"]: x["state"] for x in every}[s4["id"]] == "waitlisted"
    # another resident cannot cancel someone else's sign-up (it reads as unknown)
    r = await client.post(f"/matching/v1/activities/{a['id']}/signups/{s3['id']}/cancel", headers=resident(auth, 4))
    assert r.status_code == 404
    for who in (auth(role="dept_staff", scopes=["dept:minzheng"]), auth(role="evaluator")):
        assert (await client.get(f"/matching/v1/activities/{a['id']}/signups", headers=who)).status_code == 403


async def test_eligibility_by_age_group_and_scope(client, staff, auth):
    from tests.svc_matching.conftest import place_persons

    await place_persons(client, {"p-ak": "110105001002001"})
    a = await make_activity(client, staff, min_age=60, groups=["elderly", "disabled"], capacity=10)
    r = await sign(client, resident(auth, 1), a)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "age"
    assert (await sign(client, resident(auth, 1), a, age=45, groups=["elderly"])).json()["code"] == \
        "activity.not_eligible"
    assert (await sign(client, resident(auth, 1), a, age=70, groups=["veteran"])).json()["code"] == \
        "activity.not_eligible"
    assert (await sign(client, resident(auth, 1), a, age=70, groups=["elderly"])).status_code == 201
    r = await sign(client, auth(role="resident", scopes=["person:p-ak"]), a, age=70, groups=["elderly"])
    assert r.status_code == 403 and r.json()["code"] == "activity.not_eligible"        # lives in 安康
    r = await sign(client, staff, a, person_id="p-unknown", age=70, groups=["elderly"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "person_id"
    assert (await sign(client, staff, a, person_id="p-2", age=66, groups=["disabled"])).status_code == 201
    r = await sign(client, staff, a, person_id="p-3", role="volunteer")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "role"             # not a volunteer


async def test_cancelled_activity_refuses_sign_up_and_check_in_writing_nothing(client, staff, auth):
    a = await make_activity(client, staff)
    assert (await sign(client, resident(auth, 1), a)).status_code == 201
    r = await client.post(f"/matching/v1/activities/{a['id']}/status", headers=resident(auth, 1),
                          json={"status": "cancelled", "version": a["version"], "reason": "x"})
    assert r.status_code == 403
    r = await client.post(f"/matching/v1/activities/{a['id']}/status", headers=staff,
                          json={"status": "cancelled", "version": a["version"], "reason": "场地维修"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    before = await written(client)
    r = await sign(client, resident(auth, 2), a)
    assert r.status_code == 409 and r.json()["code"] == "activity.cancelled"
    client.app.state.clock.advance(days=2)
    r = await check_in(client, staff, a, "p-1")
    assert r.status_code == 409 and r.json()["code"] == "activity.cancelled"
    assert await written(client) == before


async def test_check_in_credits_points_and_volunteer_hours_once(client, staff, auth):
    vol = await client.post("/matching/v1/volunteers", headers=staff, json={
        "person_id": "p-9", "name": "志愿者九", "skills": ["life_service"], "max_load": 3, "latitude": 39.921,
        "longitude": 116.443, "place_code": "110105001001001"})
    assert vol.status_code == 201, vol.text
    a = await make_activity(client, staff, points=5)
    assert (await sign(client, resident(auth, 1), a)).status_code == 201
    assert (await sign(client, staff, a, person_id="p-9", role="volunteer")).status_code == 201
    r = await check_in(client, staff, a, "p-1")
    assert r.status_code == 409 and r.json()["code"] == "activity.check_in_window"     # two days early
    client.app.state.clock.advance(days=2, minutes=5)
    before = await written(client)
    r = await check_in(client, staff, a, "p-2")                 # never signed up
    assert r.status_code == 422 and r.json()["errors"][0] == {
        **r.json()["errors"][0], "field": "person_id", "code": "activity.not_signed_up"}
    assert await written(client) == before
    kiosk = auth(role="system", user="kiosk", member="kiosk")
    results = await asyncio.gather(*(check_in(client, kiosk if i % 2 else staff, a, "p-1") for i in range(6)))
    assert sorted(r.status_code for r in results) == [200] * 5 + [201]
    assert len({r.json()["posting_id"] for r in results}) == 1
    assert await balance(client, "p-1", "point") == 5
    r = await check_in(client, staff, a, "p-9")
    assert r.status_code == 201
    assert await balance(client, "p-9", "minute") == 120                              # the activity's two hours
    assert await balance(client, "p-9", "point") == 0
    other_system = auth(role="system", user="portal", member="portal")
    other_staff = auth(role="community_staff", scopes=["community:110105001002"])
    for who in (other_system, other_staff, resident(auth, 1)):
        r = await check_in(client, who, a, "p-1")
        assert r.status_code == 403, r.text
    async with client.app.state.db.session() as s:
        rows = (await s.execute(select(OutboxEvent.type, OutboxEvent.data).where(
            OutboxEvent.type.in_(("participation.recorded", "activity.checked_in"))))).all()
    part = sorted((d["person_id"], d["activity"]) for t, d in rows if t == "participation.recorded")
    assert part == [("p-1", "community_activity"), ("p-9", "volunteer_service")]
    assert sum(1 for t, _ in rows if t == "activity.checked_in") == 2


async def test_concurrent_sign_ups_never_exceed_capacity(client, staff, auth):
    from tests.svc_matching.conftest import place_persons

    await place_persons(client, {f"q-{i}": "110105001001002" for i in range(30)})
    a = await make_activity(client, staff, capacity=5)
    results = await asyncio.gather(*(sign(client, auth(role="resident", scopes=[f"person:q-{i}"]), a)
                                     for i in range(30)))
    states = sorted(r.json()["state"] for r in results)
    assert states == ["signed_up"] * 5 + ["waitlisted"] * 25
    async with client.app.state.db.session() as s:
        assert (await s.execute(select(Activity.taken))).scalar_one() == 5


async def test_publishing_is_for_the_place_or_the_organiser(client, staff, auth):
    from tests.svc_matching.conftest import make_org

    org, _ = await make_org(client, staff)
    body = {"organiser_kind": "organisation", "organiser_id": org["id"]}
    provider = auth(role="provider", scopes=[f"provider:{org['id']}"])
    a = await make_activity(client, provider, **body)
    assert a["organiser_id"] == org["id"]
    # an organiser the directory does not know: 422 naming organiser_id, nothing written (staff or its provider)
    before = await written(client)
    for who in (staff, auth(role="provider", scopes=["provider:o-unregistered"])):
        now = now_of(client)
        r = await client.post("/matching/v1/activities", headers=who, json={
            "title": "x", "category": "culture", "place_code": XF, "organiser_kind": "organisation",
            "organiser_id": "o-unregistered", "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=1, hours=1)).isoformat(), "capacity": 3})
        assert r.status_code == 422, r.text
        assert (r.json()["errors"][0]["field"], r.json()["errors"][0]["code"]) == \
            ("organiser_id", "activity.organiser_unknown")
    assert await written(client) == before
    for who in (resident(auth, 1), auth(role="provider", scopes=["provider:o-2"]),
                auth(role="community_staff", scopes=["community:110105001002"]), auth(role="dept_staff")):
        now = now_of(client)
        r = await client.post("/matching/v1/activities", headers=who, json={
            "title": "x", "category": "culture", "place_code": XF, "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=1, hours=1)).isoformat(), "capacity": 3, **body})
        assert r.status_code == 403, r.text
    now = now_of(client)
    r = await client.post("/matching/v1/activities", headers=staff, json={
        "title": "x", "category": "culture", "organiser_kind": "community", "place_code": XF,
        "starts_at": (now - timedelta(hours=1)).isoformat(), "ends_at": now.isoformat(), "capacity": 3})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "starts_at"
    listed = (await client.get("/matching/v1/activities", params={"place_code": XF}, headers=resident(auth, 1))).json()
    assert [x["id"] for x in listed["items"]] == [a["id"]]
    async with client.app.state.db.session() as s:
        ev = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == "activity.published"))).scalar_one()
    assert ev.community == XF and ev.data["category"] == "education"


async def test_times_are_rfc3339_instants_with_an_offset(client, staff, auth):
    """`starts_after` and the create's times are common.validators.Instant: an RFC 3339 date-time with an offset;
    a number (read as a Unix timestamp by pydantic alone) or a time without its offset is a 422 naming the field."""
    early = await make_activity(client, staff)
    now = now_of(client)
    late = await make_activity(client, staff, starts_at=(now + timedelta(days=5)).isoformat(),
                               ends_at=(now + timedelta(days=5, hours=1)).isoformat())
    who = resident(auth, 1)
    after = (now + timedelta(days=3)).isoformat()
    listed = (await client.get("/matching/v1/activities", params={"starts_after": after}, headers=who)).json()
    assert [x["id"] for x in listed["items"]] == [late["id"]] and early["id"] != late["id"]
    for bad in ("1700000000", (now + timedelta(days=3)).replace(tzinfo=None).isoformat(), "2026-13-01T00:00:00Z"):
        r = await client.get("/matching/v1/activities", params={"starts_after": bad}, headers=who)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "starts_after", (bad, r.text)
    before = await written(client)
    for field, bad in (("starts_at", 1900000000), ("ends_at", (now + timedelta(days=2)).replace(tzinfo=None).isoformat())):
        body = {"title": "x", "category": "culture", "organiser_kind": "community", "place_code": XF, "capacity": 3,
                "starts_at": (now + timedelta(days=1)).isoformat(), "ends_at": (now + timedelta(days=1, hours=1)).isoformat(),
                field: bad}
        r = await client.post("/matching/v1/activities", headers=staff, json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (field, r.text)
    assert await written(client) == before


async def test_one_person_signing_up_at_once_holds_one_place(client, staff, auth):
    """A double-tapped sign-up (no Idempotency-Key) fired at once: one sign-up, the others 409
    activity.already_signed_up, one place taken (on PostgreSQL the activity's row is locked first, as SQLite's single
    writer does: no unique-key violation surfacing as a 500)."""
    a = await make_activity(client, staff, capacity=5)
    me = resident(auth, 7)
    results = await asyncio.gather(*(sign(client, me, a) for _ in range(6)))
    assert sorted(r.status_code for r in results) == [201] + [409] * 5, [r.text for r in results]
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"activity.already_signed_up"}
    async with client.app.state.db.session() as s:
        assert (await s.execute(select(Activity.taken))).scalar_one() == 1
