"""Volunteers and needs: creation, priority, scope, bad input."""
from __future__ import annotations

from sqlalchemy import func, select

from tests.svc_matching.conftest import HOME

VOL = {"person_id": "p-5", "name": "陈静", "skills": ["elderly_care", "life_service"], "max_load": 3,
       "availability": [{"byday": "SA,SU", "opens_at": "09:00", "closes_at": "17:00"}],
       "latitude": HOME[0], "longitude": HOME[1], "place_code": "110105001001001"}
NEED = {"category": "elderly_care", "person_id": "p-3", "priority": "normal", "requester_age": 88,
        "requester_tags": ["elderly", "living_alone"], "place_code": "110105001001001",
        "latitude": HOME[0], "longitude": HOME[1], "source": "survey",
        "window_start": "2026-11-28T09:00:00+08:00", "window_end": "2026-11-28T11:00:00+08:00"}


async def test_volunteer_gets_time_bank_account(client, staff):
    r = await client.post("/matching/v1/volunteers", headers=staff, json=VOL)
    assert r.status_code == 201, r.text
    vol = r.json()
    assert vol["account_id"]
    r = await client.get(f"/matching/v1/timebank/accounts/{vol['account_id']}", headers=staff)
    assert r.json()["balance"] == 0 and r.json()["unit"] == "minute"
    r = await client.post("/matching/v1/volunteers", headers=staff, json=VOL)
    assert r.status_code == 409


async def test_need_created_with_priority_raised_and_event(client, staff):
    from svc_matching.models import OutboxEvent

    r = await client.post("/matching/v1/needs", headers=staff, json=NEED)
    assert r.status_code == 201, r.text
    need = r.json()
    assert need["status"] == "open" and need["priority_score"] == 2   # normal + vulnerable group
    assert need["window_start"].startswith("2026-11-28T01:00:00")
    async with client.app.state.db.session() as s:
        ev = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == "need.created"))).scalar_one()
    assert ev.subject == need["id"] and ev.community == "110105001001" and ev.grid == "110105001001001"
    r = await client.get("/matching/v1/needs", params={"status": "open"}, headers=staff)
    assert [n["id"] for n in r.json()["items"]] == [need["id"]]


async def test_need_scope(client, auth, staff):
    r = await client.post("/matching/v1/needs", headers=staff, json=NEED)
    nid = r.json()["id"]
    other = auth(role="community_staff", scopes=["community:110105001002"])
    assert (await client.get(f"/matching/v1/needs/{nid}", headers=other)).status_code == 404
    assert (await client.get("/matching/v1/needs", headers=other)).json()["items"] == []
    assert (await client.post("/matching/v1/needs", headers=other, json=NEED)).status_code == 403
    assert (await client.post("/matching/v1/needs", headers=auth(role="resident", scopes=["person:p-3"]),
                              json=NEED)).status_code == 403


async def test_bad_people_input_names_the_field_and_writes_nothing(client, staff):
    from svc_matching.models import Account, Need, OutboxEvent, Volunteer

    async def counts():
        async with client.app.state.db.session() as s:
            return [(await s.execute(select(func.count()).select_from(m))).scalar()
                    for m in (Need, Volunteer, Account, OutboxEvent)]

    before = await counts()
    cases = [
        ("/matching/v1/volunteers", {**VOL, "max_load": -1}, "max_load"),
        ("/matching/v1/volunteers", {**VOL, "skills": ["cooking_for_cats"]}, "skills.0"),
        ("/matching/v1/volunteers", {**VOL, "availability": [{"byday": "MO", "opens_at": "10:00",
                                                              "closes_at": "09:00"}]}, "availability.0.closes_at"),
        ("/matching/v1/volunteers", {**VOL, "latitude": -90.5}, "latitude"),
        ("/matching/v1/needs", {**NEED, "category": "unknown_cat"}, "category"),
        ("/matching/v1/needs", {**NEED, "requester_tags": ["elderly", "vip"]}, "requester_tags.1"),
        ("/matching/v1/needs", {**NEED, "window_end": "2026-11-28T08:00:00+08:00"}, "window_end"),
        ("/matching/v1/needs", {**NEED, "window_end": None}, "window_end"),
        ("/matching/v1/needs", {**NEED, "window_start": "2026-11-28T09:00:00"}, "window_start"),
        ("/matching/v1/needs", {**NEED, "longitude": 180.01}, "longitude"),
        ("/matching/v1/needs", {**NEED, "person_id": None}, "person_id"),
    ]
    for path, body, field in cases:
        r = await client.post(path, headers=staff, json=body)
        assert r.status_code == 422, (field, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())
    assert await counts() == before
