"""Dispatch with svc_matching's recommendations (up and down), once-only materials through the exchange (failing,
then retried), and merging duplicates keeping both timelines. svc_matching and the gateway are httpx mock
transports (the `upstreams` fixture)."""
from __future__ import annotations

import asyncio
import json

import httpx
import jwt
import pytest

from svc_services.base import IdempotencyRecord
from svc_services.requests.lifecycle import replay
from tests.svc_services.conftest import (GRID1, OPS, P1, PROVIDER, RES1, RES3, STAFF, START, move, refuse,
                                         submit)

ID_NUMBER = "11010519491231002X"


def caller(request: httpx.Request) -> str:
    token = request.headers["authorization"].removeprefix("Bearer ")
    return jwt.decode(token, options={"verify_signature": False})["sub"]


def matching_up(calls: list):
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/matching/v1/needs":
            body = json.loads(request.content)
            assert body["source"] == "request" and body["person_id"] == P1 and body["place_code"] == GRID1
            assert body["category"] == "elderly_care" and body["latitude"] == 39.9211
            return httpx.Response(201, json={"id": "need-1", **body})
        if request.method == "POST" and path == "/matching/v1/needs/need-1/candidates":
            assert request.url.params["k"] == "5"
            reasons = [{"factor": "distance", "cost": 3, "value": 120, "zh": "距离约 120 米", "en": "About 120 m away"}]
            return httpx.Response(200, json={"need_id": "need-1", "excluded": {}, "candidates": [
                {"provider": {"kind": "service", "id": "svc-1", "name": "幸福助餐点"}, "cost": 10,
                 "distance_m": 120, "reasons": reasons},
                {"provider": {"kind": "volunteer", "id": "vol-1", "name": "陈静"}, "cost": 30, "distance_m": 400,
                 "reasons": []}]})
        if request.method == "GET" and path == "/matching/v1/services/svc-1":
            return httpx.Response(200, json={"id": "svc-1", "organization_id": "org-1"})
        return httpx.Response(404, json={"code": "not_found"})
    return handler


async def accepted_meal(client, auth):
    rid = (await submit(client, auth, who=RES1, item_code="YL-ZC-001", attributes={"meal_time": "lunch"},
                        location={"lat": 39.9211, "long": 116.4431})).json()["id"]
    r = await move(client, auth, rid, "accept", STAFF)
    assert r.status_code == 200, r.text
    return rid, r.json()


async def test_dispatch_with_recommended_candidate(ready, auth, upstreams):
    client = ready
    calls: list[httpx.Request] = []
    upstreams["matching"] = matching_up(calls)
    rid, _ = await accepted_meal(client, auth)
    staff = auth(**STAFF)

    r = await client.get(f"/services/v1/requests/{rid}/candidates", headers=staff)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["available"] is True and body["dispatch"] == "recommended" and body["need_id"] == "need-1"
    first = body["candidates"][0]
    assert first["rank"] == 1 and first["assignee"] == {"kind": "provider", "id": "org-1", "name": "幸福助餐点"}
    assert first["reasons"][0]["factor"] == "distance"
    assert body["candidates"][1]["assignee"]["id"] == "vol-1"
    # the caller's token travels on; the need is made once (idempotency key), then reused
    need_posts = [c for c in calls if c.url.path == "/matching/v1/needs"]
    assert len(need_posts) == 1 and need_posts[0].headers["idempotency-key"] == f"svc_services-request-{rid}"
    assert need_posts[0].headers["authorization"] == staff["Authorization"]
    assert (await client.get(f"/services/v1/requests/{rid}/candidates", headers=staff)).status_code == 200
    assert len([c for c in calls if c.url.path == "/matching/v1/needs"]) == 1

    # who may ask: dispatchers only
    assert (await client.get(f"/services/v1/requests/{rid}/candidates", headers=auth(**RES1))).status_code == 403

    r = await move(client, auth, rid, "dispatch", STAFF, candidate_rank=3)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "candidate_rank"
    r = await move(client, auth, rid, "dispatch", STAFF, candidate_rank=1, assignee={"kind": "provider", "id": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "assignee"
    r = await move(client, auth, rid, "dispatch", STAFF, candidate_rank=1)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["state"] == "dispatched" and out["assignee_kind"] == "provider" and out["assignee_id"] == "org-1"
    entry = out["timeline"][-1]
    assert entry["data"]["dispatch_mode"] == "recommended"
    rec = entry["data"]["recommendation"]
    assert rec["rank"] == 1 and rec["need_id"] == "need-1" and rec["reasons"][0]["zh"] == "距离约 120 米"
    # the recommended provider (organisation org-1) takes it
    assert (await move(client, auth, rid, "claim", PROVIDER)).status_code == 200


@pytest.mark.parametrize("down", ["refused", "503"])
async def test_matching_down_means_manual_dispatch(ready, auth, upstreams, down):
    client = ready
    if down == "503":
        upstreams["matching"] = lambda request: httpx.Response(503, json={"code": "service_unavailable"})
    rid, _ = await accepted_meal(client, auth)
    r = await client.get(f"/services/v1/requests/{rid}/candidates", headers=auth(**STAFF))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["available"] is False and body["dispatch"] == "manual" and body["candidates"] == []
    assert body["reason"]["code"] == "matching.unavailable" and "人工派单" in body["reason"]["zh"]

    r = await move(client, auth, rid, "dispatch", STAFF, candidate_rank=1)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "dispatch.no_recommendation"
    r = await move(client, auth, rid, "dispatch", STAFF, assignee={"kind": "grid_worker", "id": "grid1"})
    assert r.status_code == 200, r.text
    data = r.json()["timeline"][-1]["data"]
    assert data["dispatch_mode"] == "manual" and data["assignee"]["id"] == "grid1"
    assert data["matching"]["available"] is False and data["matching"]["reason"]["code"] == "matching.unavailable"


async def test_matching_refusal_is_reported(ready, auth, upstreams):
    client = ready
    upstreams["matching"] = lambda request: httpx.Response(
        422, json={"code": "validation_error", "detail": "须指定居民或户"})
    rid = (await submit(client, auth, who=STAFF)).json()["id"]   # a request without a person
    body = (await client.get(f"/services/v1/requests/{rid}/candidates", headers=auth(**STAFF))).json()
    assert body["available"] is False and body["reason"]["code"] == "matching.refused"
    assert "须指定居民或户" in body["reason"]["zh"]


def exchange(state: dict):
    def handler(request: httpx.Request) -> httpx.Response:
        state.setdefault("calls", []).append(request)
        path = request.url.path
        if path == f"/residents/v1/persons/{P1}":
            assert request.url.params["reveal"] == "true" and request.url.params["purpose"]
            return httpx.Response(200, json={"id": P1, "id_number": ID_NUMBER, "revealed": True})
        if path == "/departments/minzheng/v1/queries":
            assert json.loads(request.content) == {"id_number": ID_NUMBER}
            assert request.headers["x-onenet-purpose"].startswith("%E8%AF%89%E6%B1%82")  # 诉求…, percent-encoded
            if state.get("department_down"):
                return httpx.Response(503, json={"code": "department.unavailable", "detail": "部门系统暂时无法应答"})
            return httpx.Response(200, json={"department": "minzheng", "department_name": "民政局",
                                             "id_number": ID_NUMBER, "data": {"dibao": True, "tekun": False}})
        return httpx.Response(404, json={"code": "not_found"})
    return handler


async def test_once_only_materials_fetched_on_acceptance_with_retry(ready, auth, upstreams):
    client = ready
    state = {"department_down": True}
    upstreams["exchange"] = exchange(state)
    rid, accepted = await accepted_meal(client, auth)
    staff = auth(**STAFF)
    # the department failed: the material stays pending, with the reason and a retry path
    [m] = accepted["materials"]
    assert m["code"] == "dibao_certificate" and m["source"] == "exchange" and m["department"] == "minzheng"
    assert m["status"] == "pending" and m["attempts"] == 1 and "503" in m["last_error"]
    assert caller(state["calls"][0]) == "staff1"   # the caller's token travels on
    r = await client.get(f"/services/v1/requests/{rid}", headers=auth(**RES1))
    assert r.json()["materials"][0]["status"] == "pending"

    assert (await client.post(f"/services/v1/requests/{rid}/materials/fetch",
                              headers=auth(**RES1))).status_code == 403
    state["department_down"] = False
    r = await client.post(f"/services/v1/requests/{rid}/materials/fetch", headers=staff)
    assert r.status_code == 200, r.text
    [m] = r.json()
    assert m["status"] == "fetched" and m["attempts"] == 2 and m["last_error"] is None
    assert m["fetched_at"].startswith(START.isoformat()[:19])
    assert m["fetched_from"]["department"] == "minzheng" and m["fetched_from"]["department_name"] == "民政局"
    assert m["fetched_from"]["path"] == "/departments/minzheng/v1/queries" and m["fetched_from"]["via"]
    assert m["data"] == {"dibao": True, "tekun": False}
    # nothing more to fetch: no further calls; the ID number is never kept
    n = len(state["calls"])
    assert (await client.post(f"/services/v1/requests/{rid}/materials/fetch", headers=staff)).status_code == 200
    assert len(state["calls"]) == n
    r = await client.get(f"/services/v1/requests/{rid}/materials", headers=auth(**RES1))
    assert r.status_code == 200 and r.json()[0]["data"] == {"dibao": True, "tekun": False}
    assert ID_NUMBER not in r.text
    # a provider working the request sees the status, not the department's answer
    assert (await move(client, auth, rid, "dispatch", STAFF, assignee={"kind": "provider", "id": "org-1"})
            ).status_code == 200
    r = await client.get(f"/services/v1/requests/{rid}/materials", headers=auth(**PROVIDER))
    assert r.json()[0]["status"] == "fetched" and r.json()[0]["data"] is None


async def test_materials_when_the_exchange_is_down_and_without_a_person(ready, auth):
    client = ready
    rid, accepted = await accepted_meal(client, auth)     # the exchange refuses connections
    [m] = accepted["materials"]
    assert m["status"] == "pending" and "unavailable" in m["last_error"]
    # a request made for no person has nobody to ask about
    rid2 = (await submit(client, auth, who=STAFF, item_code="YL-ZC-001", attributes={"meal_time": "lunch"})
            ).json()["id"]
    r = await move(client, auth, rid2, "accept", STAFF)
    assert r.status_code == 200 and r.json()["materials"][0]["status"] == "not_applicable"
    # items without materials have none
    rid3 = (await submit(client, auth)).json()["id"]
    r = await move(client, auth, rid3, "accept", STAFF)
    assert r.status_code == 200 and r.json()["materials"] == []


async def test_merge_keeps_both_timelines(ready, auth):
    client = ready
    keep = (await submit(client, auth)).json()["id"]
    dup = (await submit(client, auth, who=RES3)).json()["id"]
    assert (await move(client, auth, keep, "accept", STAFF)).status_code == 200
    r = await move(client, auth, dup, "merge", STAFF, into=keep, note="同一楼栋同一问题")
    assert r.status_code == 200
    merged = r.json()
    assert merged["state"] == "merged" and merged["merged_into"] == keep
    assert merged["timeline"][-1]["action"] == "merge" and merged["timeline"][-1]["data"]["into"] == keep

    target = (await client.get(f"/services/v1/requests/{keep}", headers=auth(**OPS))).json()
    tl = target["timeline"]
    assert [t["action"] for t in tl] == ["submit", "accept", "absorb"]
    assert tl[-1]["data"]["merged"] == dup and tl[-1]["note"] == "同一楼栋同一问题"
    assert tl[-1]["from_state"] == tl[-1]["to_state"] == "accepted"
    assert target["state"] == "accepted" and target["version"] == len(tl) == 3
    assert replay([(t["action"], t["from_state"], t["to_state"]) for t in tl]) == "accepted"
    # the target moved on: a stale version is refused, the current one works
    assert (await move(client, auth, keep, "dispatch", STAFF, version=2,
                       assignee={"kind": "grid_worker", "id": "grid1"})).status_code == 409
    assert (await move(client, auth, keep, "dispatch", STAFF,
                       assignee={"kind": "grid_worker", "id": "grid1"})).status_code == 200
    # both timelines stay readable, the public one too
    r = await client.get(f"/open311/v2/requests/{keep}.json?extensions=true")
    assert [t["action"] for t in r.json()[0]["extended_attributes"]["timeline"]] == ["submit", "accept", "absorb",
                                                                                      "dispatch"]
    r = await client.get(f"/open311/v2/requests/{dup}.json")
    assert r.json()[0]["status"] == "closed" and keep in r.json()[0]["status_notes"]


async def test_materials_fetch_honours_idempotency_key(ready, auth, upstreams):
    client = ready
    state = {"department_down": True}
    upstreams["exchange"] = exchange(state)
    rid, accepted = await accepted_meal(client, auth)
    assert accepted["materials"][0]["status"] == "pending"
    url = f"/services/v1/requests/{rid}/materials/fetch"
    headers = {**auth(**STAFF), "Idempotency-Key": "fetch-1"}
    first = await client.post(url, headers=headers)
    assert first.status_code == 200 and first.headers["idempotency-replayed"] == "false"
    assert first.json()[0]["status"] == "pending" and first.json()[0]["attempts"] == 2
    # the department is back, but a retry of the same call replays its answer and asks nobody
    state["department_down"] = False
    n = len(state["calls"])
    again = await client.post(url, headers=headers)
    assert again.status_code == 200 and again.headers["idempotency-replayed"] == "true"
    assert again.json() == first.json() and len(state["calls"]) == n
    # concurrent retries of a new key: one fetch, the others replay it
    headers2 = {**auth(**STAFF), "Idempotency-Key": "fetch-2"}
    resps = await asyncio.gather(*(client.post(url, headers=headers2) for _ in range(5)))
    assert {r.status_code for r in resps} == {200}
    assert sorted(r.headers["idempotency-replayed"] for r in resps) == ["false"] + ["true"] * 4
    assert all(r.json() == resps[0].json() for r in resps)
    assert resps[0].json()[0]["status"] == "fetched" and resps[0].json()[0]["attempts"] == 3
    asked = [c for c in state["calls"][n:] if c.url.path == "/departments/minzheng/v1/queries"]
    assert len(asked) == 1
    # a refused call is not remembered under its key
    r = await client.post(url, headers={**auth(**RES1), "Idempotency-Key": "fetch-3"})
    assert r.status_code == 403
    async with client.app.state.db.session() as s:
        assert await s.get(IdempotencyRecord, ("app-test/resident1", "fetch-3")) is None
    r = await client.post(url, headers={**auth(**STAFF), "Idempotency-Key": "x" * 201})
    assert r.status_code == 400


@pytest.mark.parametrize("down", ["refused", "503", "timeout"])
async def test_manual_dispatch_says_matching_is_down_without_asking_for_candidates(ready, auth, upstreams, down):
    client = ready
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if down == "503":
            return httpx.Response(503, json={"code": "service_unavailable"})
        if down == "timeout":
            raise httpx.ReadTimeout("svc_matching did not answer", request=request)
        return refuse(request)

    upstreams["matching"] = handler
    rid, _ = await accepted_meal(client, auth)   # nobody fetched candidates
    r = await move(client, auth, rid, "dispatch", STAFF, assignee={"kind": "grid_worker", "id": "grid1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["state"] == "dispatched" and out["assignee_id"] == "grid1"
    data = out["timeline"][-1]["data"]
    assert data["dispatch_mode"] == "manual" and data["assignee"]["id"] == "grid1"
    assert data["matching"]["available"] is False and data["matching"]["reason"]["code"] == "matching.unavailable"
    assert "人工派单" in data["matching"]["reason"]["zh"] and data["matching"]["at"]
    assert calls  # svc_matching was asked
    # and it is what the stored timeline says
    r = await client.get(f"/services/v1/requests/{rid}/timeline", headers=auth(**STAFF))
    assert r.json()[-1]["data"]["matching"]["available"] is False


async def test_manual_dispatch_while_matching_is_up_says_nothing_about_it(ready, auth, upstreams):
    client = ready
    state = {"up": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if not state["up"]:
            return refuse(request)
        if request.url.path == "/matching/v1/hsds/":
            return httpx.Response(200, json={"version": "3.0"})
        return httpx.Response(404, json={"code": "not_found"})

    upstreams["matching"] = handler
    rid, _ = await accepted_meal(client, auth)
    # recommendations asked for while svc_matching was down…
    body = (await client.get(f"/services/v1/requests/{rid}/candidates", headers=auth(**STAFF))).json()
    assert body["available"] is False
    # …but it is back when the dispatcher chooses by hand: the entry does not claim it was down
    state["up"] = True
    r = await move(client, auth, rid, "dispatch", STAFF, assignee={"kind": "grid_worker", "id": "grid1"})
    assert r.status_code == 200, r.text
    data = r.json()["timeline"][-1]["data"]
    assert data["dispatch_mode"] == "manual" and "matching" not in data
