"""The offer cycle: candidates with reasons, offer, decline → next, expiry → next, accept, completion, batch."""
from __future__ import annotations

from sqlalchemy import select

from tests.svc_matching.conftest import HOME, USCC, make_org, service_body

MONDAY = {"window_start": "2026-11-23T10:00:00+08:00", "window_end": "2026-11-23T11:00:00+08:00"}
SATURDAY = {"window_start": "2026-11-28T10:00:00+08:00", "window_end": "2026-11-28T11:00:00+08:00"}


def need_body(**kw):
    return {"category": "elderly_care", "person_id": "p-3", "requester_age": 80, "requester_tags": ["elderly"],
            "place_code": "110105001001001", "latitude": HOME[0], "longitude": HOME[1], "source": "request",
            **MONDAY, **kw}


async def setup_world(client, staff):
    org1, loc1 = await make_org(client, staff)
    org2, loc2 = await make_org(client, staff, uscc=USCC[1], name="安康便民服务社", lat=HOME[0] + 0.003)
    s1 = (await client.post("/matching/v1/services", headers=staff, json=service_body(org1, loc1))).json()
    s2 = (await client.post("/matching/v1/services", headers=staff,
                            json=service_body(org2, loc2, capacity={"maximum": 1}))).json()
    vol = (await client.post("/matching/v1/volunteers", headers=staff, json={
        "person_id": "p-5", "name": "陈静", "skills": ["elderly_care", "life_service"], "max_load": 2,
        "availability": [{"byday": "SA,SU", "opens_at": "09:00", "closes_at": "17:00"}],
        "latitude": HOME[0], "longitude": HOME[1], "place_code": "110105001001001"})).json()
    return {"org1": org1, "org2": org2, "s1": s1, "s2": s2, "vol": vol}


async def events(client, type_):
    from svc_matching.models import OutboxEvent
    async with client.app.state.db.session() as s:
        return list((await s.execute(select(OutboxEvent).where(OutboxEvent.type == type_)
                                     .order_by(OutboxEvent.id))).scalars())


async def test_candidates_decline_expire_cycle(client, staff, auth):
    w = await setup_world(client, staff)
    need = (await client.post("/matching/v1/needs", headers=staff, json=need_body())).json()
    r = await client.post(f"/matching/v1/needs/{need['id']}/candidates", headers=staff)
    body = r.json()
    assert [c["provider"]["id"] for c in body["candidates"]] == [w["s1"]["id"], w["s2"]["id"]]
    assert body["excluded"]["schedule"]["count"] == 1                     # the weekend volunteer
    assert {x["factor"] for x in body["candidates"][0]["reasons"]} >= {"distance", "load", "rating", "priority"}

    r = await client.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)
    assert r.status_code == 201, r.text
    offer = r.json()["offer"]
    assert offer["provider_id"] == w["s1"]["id"] and offer["rank"] == 0 and r.json()["need_status"] == "offered"
    assert len(await events(client, "match.proposed")) == 1
    assert (await client.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)).status_code == 409

    # provider of another organisation does not even see it; its own provider declines → next candidate
    other = auth(role="provider", scopes=[f"provider:{w['org2']['id']}"])
    assert (await client.post(f"/matching/v1/offers/{offer['id']}/decline", headers=other)).status_code == 404
    mine = auth(role="provider", scopes=[f"provider:{w['org1']['id']}"])
    r = await client.post(f"/matching/v1/offers/{offer['id']}/decline", headers=mine, json={"reason": "人手不足"})
    assert r.status_code == 200, r.text
    nxt = r.json()["next_offer"]
    assert r.json()["offer"]["status"] == "declined" and nxt["provider_id"] == w["s2"]["id"] and nxt["rank"] == 1
    assert (await client.post(f"/matching/v1/offers/{offer['id']}/accept", headers=mine)).status_code == 409

    # the second offer runs out of time: the sweep expires it; no candidate left → unmatched
    client.app.state.clock.advance(minutes=121)
    r = await client.post("/matching/v1/offers/expire", headers=auth(role="ops"))
    assert r.json() == {"expired": 1}
    r = await client.get(f"/matching/v1/offers/{nxt['id']}", headers=staff)
    assert r.json()["status"] == "expired"
    assert (await client.get(f"/matching/v1/needs/{need['id']}", headers=staff)).json()["status"] == "unmatched"
    assert [e.subject for e in await events(client, "offer.declined")] == [offer["id"]]
    assert [e.subject for e in await events(client, "offer.expired")] == [nxt["id"]]


async def test_accept_records_match_time_and_late_accept_moves_on(client, staff, auth):
    w = await setup_world(client, staff)
    need = (await client.post("/matching/v1/needs", headers=staff, json=need_body())).json()
    offer = (await client.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)).json()["offer"]
    client.app.state.clock.advance(minutes=30)
    mine = auth(role="provider", scopes=[f"provider:{w['org1']['id']}"])
    r = await client.post(f"/matching/v1/offers/{offer['id']}/accept", headers={**mine, "If-Match": '"9"'})
    assert r.status_code == 412
    r = await client.post(f"/matching/v1/offers/{offer['id']}/accept", headers={**mine, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    n = (await client.get(f"/matching/v1/needs/{need['id']}", headers=staff)).json()
    assert n["status"] == "matched" and n["match_seconds"] == 1800 and n["matched_id"] == w["s1"]["id"]
    ev = (await events(client, "offer.accepted"))[0]
    assert ev.data["match_seconds"] == 1800 and ev.grid == "110105001001001"
    r = await client.post(f"/matching/v1/offers/{offer['id']}/complete", headers=staff, json={"rating": 5})
    assert r.json()["status"] == "completed"

    # a late acceptance: the offer expires and moves on to the next candidate
    need2 = (await client.post("/matching/v1/needs", headers=staff, json=need_body(person_id="p-7"))).json()
    off2 = (await client.post(f"/matching/v1/needs/{need2['id']}/match", headers=staff)).json()["offer"]
    assert off2["provider_id"] == w["s1"]["id"]      # rated 5 and nearest
    client.app.state.clock.advance(hours=3)
    r = await client.post(f"/matching/v1/offers/{off2['id']}/accept", headers=mine)
    assert r.status_code == 409 and r.json()["code"] == "offer.expired"
    r = await client.get("/matching/v1/offers", params={"need_id": need2["id"], "status": "pending"}, headers=staff)
    assert [o["provider_id"] for o in r.json()["items"]] == [w["s2"]["id"]]


async def test_volunteer_service_credits_time_bank(client, staff, auth):
    w = await setup_world(client, staff)
    need = (await client.post("/matching/v1/needs", headers=staff,
                              json=need_body(category="life_service", requester_tags=[], **SATURDAY))).json()
    offer = (await client.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)).json()["offer"]
    assert offer["provider_kind"] == "volunteer" and offer["provider_id"] == w["vol"]["id"]
    assert (await client.post(f"/matching/v1/offers/{offer['id']}/accept",
                              headers=auth(role="resident", scopes=["person:p-9"]))).status_code == 404
    me = auth(role="resident", scopes=["person:p-5"])
    assert (await client.post(f"/matching/v1/offers/{offer['id']}/accept", headers=me)).status_code == 200
    assert (await client.post(f"/matching/v1/offers/{offer['id']}/complete", headers=me,
                              json={"hours": 1.5})).status_code == 403
    r = await client.post(f"/matching/v1/offers/{offer['id']}/complete", headers=staff, json={"hours": 1.5, "rating": 4})
    assert r.status_code == 200, r.text
    acc = (await client.get(f"/matching/v1/timebank/accounts/{w['vol']['account_id']}", headers=me)).json()
    assert acc["balance"] == 90
    st = (await client.get(f"/matching/v1/timebank/accounts/{acc['id']}/statement", headers=me)).json()
    assert [(x["amount"], x["balance_after"]) for x in st["items"]] == [(90, 90)]
    assert len(await events(client, "ledger.posted")) == 1


async def test_batch_match_is_optimal_and_offers(client, staff):
    await setup_world(client, staff)
    ids = []
    for i, tags in enumerate([["elderly"], ["elderly", "disabled"], ["elderly"], ["elderly"]]):
        r = await client.post("/matching/v1/needs", headers=staff,
                              json=need_body(person_id=f"p-{i}", requester_tags=tags, priority="normal"))
        ids.append(r.json()["id"])
    r = await client.post("/matching/v1/match/batch", headers=staff, json={"place_code": "110105001001"})
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["needs"] == 4 and body["assigned"] == 3 and len(body["unassigned"]) == 1   # capacity 2 + 1
    assert body["total_cost"] <= body["greedy_cost"]
    assert len(body["offers"]) == 3 and all(o["rank"] == 0 for o in body["offers"])
    proposed = await events(client, "match.proposed")
    assert len(proposed) == 3 and all(e.data["mode"] == "batch" for e in proposed)


async def test_offers_and_needs_stay_within_place_and_provider(client, staff, auth):
    """Object level: staff of another community do not see an offer for a need outside their place (404, as an
    unknown offer); a provider sees a need only once it was offered the work."""
    w = await setup_world(client, staff)
    need = (await client.post("/matching/v1/needs", headers=staff, json=need_body())).json()
    offer = (await client.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)).json()["offer"]
    elsewhere = auth(role="community_staff", scopes=["community:110105001002"])
    for action in ("accept", "decline"):
        r = await client.post(f"/matching/v1/offers/{offer['id']}/{action}", headers=elsewhere, json={})
        assert r.status_code == 404, (action, r.text)
    offered = auth(role="provider", scopes=[f"provider:{w['org1']['id']}"])
    not_offered = auth(role="provider", scopes=[f"provider:{w['org2']['id']}"])
    assert (await client.get(f"/matching/v1/needs/{need['id']}", headers=offered)).status_code == 200
    assert (await client.get(f"/matching/v1/needs/{need['id']}", headers=not_offered)).status_code == 404
    # the need's own staff still record an answer for the provider (phone, counter)
    r = await client.post(f"/matching/v1/offers/{offer['id']}/accept", headers=staff, json={})
    assert r.status_code == 200, r.text
