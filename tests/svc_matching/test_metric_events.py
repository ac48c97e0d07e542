"""svc_matching's producers of the svc_metrics indicators that had none: hours offered (volunteer-hour utilisation),
participation (participation rate), resources listed / withdrawn (duplicate investment). Each is done over HTTP
and the outbox row checked: written in the same transaction, with the fields the registry requires."""
from __future__ import annotations

from sqlalchemy import func, select

from svc_metrics.events.registry import REGISTRY
from tests.svc_matching.conftest import make_org, service_body
from tests.svc_matching.test_offers import SATURDAY, events, need_body, setup_world

GRID = "110105001001001"


def check_schema(row) -> None:
    """The row's data passes the registry's schema for its type (the full batch check is in the contract test)."""
    REGISTRY[row.type].data.model_validate(row.data)


async def test_volunteer_pledges_hours(client, staff, auth):
    w = await setup_world(client, staff)
    me = auth(role="resident", scopes=["person:p-5"])
    r = await client.post(f"/matching/v1/volunteers/{w['vol']['id']}/hours_offers", headers=me,
                          json={"minutes": 480, "period_start": "2026-11-28", "period_end": "2026-12-27",
                                "note": "周末助餐"})
    assert r.status_code == 201, r.text
    assert r.json()["minutes"] == 480 and r.json()["period_end"] == "2026-12-27"
    [row] = await events(client, "volunteer.hours_offered")
    assert row.subject == r.json()["id"] and row.grid == GRID and row.community == GRID[:12]
    assert row.data["minutes"] == 480 and row.data["volunteer_id"] == w["vol"]["id"]
    assert set(row.data) == {"volunteer_id", "person_id", "minutes", "period_start", "period_end"}  # no name
    check_schema(row)
    # staff of the volunteer's community may record it for them (phone, counter); one day by default
    r = await client.post(f"/matching/v1/volunteers/{w['vol']['id']}/hours_offers", headers=staff,
                          json={"minutes": 60, "period_start": "2026-11-29"})
    assert r.status_code == 201 and r.json()["period_end"] == "2026-11-29"
    assert len(await events(client, "volunteer.hours_offered")) == 2


async def test_hours_offer_refuses_others_and_bad_input(client, staff, auth):
    w = await setup_world(client, staff)
    url = f"/matching/v1/volunteers/{w['vol']['id']}/hours_offers"
    body = {"minutes": 60, "period_start": "2026-11-28"}
    for headers, status in ((auth(role="resident", scopes=["person:p-9"]), 404),
                            (auth(role="community_staff", scopes=["community:110105001002"]), 404),
                            (auth(role="provider", scopes=["provider:x"]), 404)):
        r = await client.post(url, headers=headers, json=body)
        assert r.status_code == status, r.text
    for bad, field in (({"minutes": 0, "period_start": "2026-11-28"}, "minutes"),
                       ({"minutes": 60, "period_start": "2026-11-28", "period_end": "2026-11-27"}, "period_end"),
                       ({"minutes": 60, "period_start": "2026-11-01", "period_end": "2026-12-15"}, "period_end"),
                       ({"minutes": 60}, "period_start"),
                       ({"minutes": 60, "period_start": "2026-11-28", "hours": 1}, "hours")):
        r = await client.post(url, headers=staff, json=bad)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.json()["title"])   # Chinese first
    r = await client.post("/matching/v1/volunteers/nope/hours_offers", headers=staff, json=body)
    assert r.status_code == 404
    assert await events(client, "volunteer.hours_offered") == []


async def test_credits_record_participation(client, staff, auth):
    await setup_world(client, staff)
    # volunteer service: completing the offer credits minutes and records the volunteer's participation
    need = (await client.post("/matching/v1/needs", headers=staff,
                              json=need_body(category="life_service", requester_tags=[], **SATURDAY))).json()
    offer = (await client.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)).json()["offer"]
    me = auth(role="resident", scopes=["person:p-5"])
    assert (await client.post(f"/matching/v1/offers/{offer['id']}/accept", headers=me)).status_code == 200
    r = await client.post(f"/matching/v1/offers/{offer['id']}/complete", headers=staff, json={"hours": 1.5})
    assert r.status_code == 200, r.text
    [done] = await events(client, "offer.completed")
    assert done.subject == offer["id"] and done.data["need_id"] == need["id"] and done.data["hours"] == 1.5
    check_schema(done)
    [row] = await events(client, "participation.recorded")
    assert row.data["person_id"] == "p-5" and row.data["activity"] == "volunteer_service"
    assert row.grid == GRID and row.community == GRID[:12]
    check_schema(row)
    # points for taking part in a residents' council (议事), credited by community staff
    body = {"posting_id": "council-2026-11-0001", "person_id": "p-7", "community": "110105001001", "unit": "point",
            "amount": 10, "memo": "参加居民议事会", "activity": "council"}
    r = await client.post("/matching/v1/timebank/credits", headers=staff, json=body)
    assert r.status_code == 201, r.text
    rows = await events(client, "participation.recorded")
    assert [(x.data["person_id"], x.data["activity"], x.community, x.grid) for x in rows][1:] == [
        ("p-7", "council", "110105001001", None)]
    assert set(rows[1].data) == {"person_id", "activity", "posting_id", "unit", "amount"}
    # a retried posting is the same participation, not a second one
    r = await client.post("/matching/v1/timebank/credits", headers=staff, json=body)
    assert r.status_code == 200 and r.headers["Idempotency-Replayed"] == "true"
    assert len(await events(client, "participation.recorded")) == 2
    r = await client.post("/matching/v1/timebank/credits", headers=staff,
                          json={**body, "posting_id": "council-2026-11-0002", "activity": "party"})
    assert r.status_code == 422 and "activity" in [e["field"] for e in r.json()["errors"]]
    # a redemption is spending, not participation
    acc = (await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-7"}, headers=staff)).json()
    r = await client.post("/matching/v1/timebank/redemptions", headers=staff, json={
        "posting_id": "redeem-1", "account_id": acc[0]["id"], "community": "110105001001", "amount": 5})
    assert r.status_code == 201, r.text
    assert len(await events(client, "participation.recorded")) == 2


async def test_services_listed_and_withdrawn(client, staff, auth):
    org, loc = await make_org(client, staff)
    svc = (await client.post("/matching/v1/services", headers=staff,
                             json=service_body(org, loc, categories=["elderly_care", "health"]))).json()
    [row] = await events(client, "resource.listed")
    assert row.subject == svc["id"] and row.grid == GRID and row.community == GRID[:12]
    assert row.data["category"] == "elderly_care" and row.data["categories"] == ["elderly_care", "health"]
    check_schema(row)
    url = f"/matching/v1/services/{svc['id']}/status"
    # staff of another community may not withdraw it; an unknown status names the field
    r = await client.post(url, headers=auth(role="community_staff", scopes=["community:110105001002"]),
                          json={"status": "inactive"})
    assert r.status_code == 403
    r = await client.post(url, headers=staff, json={"status": "closed"})
    assert r.status_code == 422 and "status" in [e["field"] for e in r.json()["errors"]]
    r = await client.post(url, headers=staff, json={"status": "defunct", "reason": "机构停止运营"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "defunct"
    [gone] = await events(client, "resource.withdrawn")
    assert gone.subject == svc["id"] and gone.grid == GRID and gone.data["reason"] == "机构停止运营"
    check_schema(gone)
    # withdrawing again changes nothing; listing it again is a new listing
    assert (await client.post(url, headers=staff, json={"status": "inactive"})).status_code == 200
    assert len(await events(client, "resource.withdrawn")) == 1
    assert (await client.post(url, headers=staff, json={"status": "active"})).status_code == 200
    assert len(await events(client, "resource.listed")) == 2
    # a withdrawn service is not offered any more
    from svc_matching.offers.service import load_providers
    async with client.app.state.db.session() as s:
        await client.post(url, headers=staff, json={"status": "temporarily closed"})
        providers, _ = await load_providers(s)
    assert all(p.id != f"service:{svc['id']}" for p in providers)


async def test_unlisted_service_emits_nothing(client, staff):
    from svc_matching.models import OutboxEvent

    org, loc = await make_org(client, staff)
    r = await client.post("/matching/v1/services", headers=staff,
                          json=service_body(org, loc, status="inactive", location_ids=[]))
    assert r.status_code == 201, r.text
    async with client.app.state.db.session() as s:
        n = (await s.execute(select(func.count()).select_from(OutboxEvent)
                             .where(OutboxEvent.type.like("resource.%")))).scalar()
    assert n == 0
