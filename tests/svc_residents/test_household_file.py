"""The household file: household, members with tags, and the parts from svc_services and svc_matching (stub
upstreams via httpx.MockTransport), each part independently marked unavailable when its service is down."""
from __future__ import annotations

import httpx
import pytest

from common.http_client import ServiceClient
from tests.svc_residents.conftest import GRID_A1, H, P

URL = "/residents/v1/households/{}/file"


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def slow(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def services_up(calls: list):
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        assert request.url.path == "/services/v1/requests"
        if "cursor" not in request.url.params:
            return httpx.Response(200, json={"items": [
                {"id": "r1", "item_code": "YL-ZC-001", "category": "elderly", "state": "accepted", "priority": "normal",
                 "person_id": P("P1"), "channel": "app", "overdue": False, "description": "不应出现"},
                {"id": "r2", "item_code": "WG-SJ-001", "state": "submitted", "person_id": P("P4")},
            ], "next_cursor": "c2"})
        return httpx.Response(200, json={"items": [{"id": "r3", "state": "closed", "person_id": P("P2")}],
                                         "next_cursor": None})
    return handler


def matching_up(calls: list):
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        path, params = request.url.path, request.url.params
        if path == "/matching/v1/needs":
            return httpx.Response(200, json={"items": [
                {"id": "n1", "category": "meal", "person_id": P("P1"), "household_id": H("1"), "status": "matched",
                 "matched_kind": "volunteer", "matched_id": "v1"},
                {"id": "n2", "category": "meal", "person_id": P("P3"), "household_id": H("2"), "status": "open"},
            ], "next_cursor": None})
        if path == "/matching/v1/offers":
            assert params["need_id"] == "n1"
            return httpx.Response(200, json={"items": [{"id": "o1", "need_id": "n1", "provider_kind": "volunteer",
                                                        "provider_id": "v1", "status": "accepted"}],
                                             "next_cursor": None})
        if path == "/matching/v1/timebank/accounts":
            if params["person_id"] == P("P2"):
                return httpx.Response(403, json={"code": "forbidden"})
            return httpx.Response(200, json=[{"id": "a1", "owner_kind": "person", "owner_id": params["person_id"],
                                              "unit": "hours", "kind": "member", "balance": 120}])
        return httpx.Response(404)
    return handler


@pytest.fixture
def upstreams():
    return {"services": refuse, "matching": refuse}


@pytest.fixture
async def app_client(seeded, upstreams):
    for name, attr in (("services", "services_client"), ("matching", "matching_client")):
        await getattr(seeded.app.state, attr).aclose()
        transport = httpx.MockTransport(lambda request, name=name: upstreams[name](request))
        setattr(seeded.app.state, attr, ServiceClient(name, "http://gw", transport=transport, retries=0, backoff=0))
    return seeded


async def test_file_with_every_part(app_client, upstreams, as_):
    s_calls, m_calls = [], []
    upstreams["services"], upstreams["matching"] = services_up(s_calls), matching_up(m_calls)
    headers = as_("staff1")
    r = await app_client.get(URL.format(H("1")), headers=headers)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["household"]["id"] == H("1")
    assert {m["id"] for m in f["members"]} == {P("P1"), P("P2")}
    assert all("*" in m["id_number"] for m in f["members"])  # masked as everywhere
    assert all("tags" in m for m in f["members"])
    # only the members' requests, from both pages, without their free text
    assert f["requests"]["status"] == "ok" and not f["requests"]["truncated"]
    assert [x["id"] for x in f["requests"]["items"]] == ["r1", "r3"]
    assert "description" not in f["requests"]["items"][0]
    assert s_calls[0].url.params["grid"] == GRID_A1
    # the caller's token goes upstream (each service applies its own checks to the caller)
    assert s_calls[0].headers["authorization"] == headers["Authorization"]
    assert f["matches"]["status"] == "ok"
    assert [n["id"] for n in f["matches"]["items"]] == ["n1"]
    assert f["matches"]["items"][0]["offers"][0]["id"] == "o1"
    tb = f["timebank"]
    assert tb["status"] == "ok" and tb["balances"] == [
        {"person_id": P("P1"), "account_id": "a1", "unit": "hours", "kind": "member", "balance": 120}]
    assert tb["withheld"] == [P("P2")]


async def test_services_down_the_file_still_returns(app_client, upstreams, as_):
    upstreams["matching"] = matching_up([])  # svc_services refuses connections (the fixture's default)
    r = await app_client.get(URL.format(H("1")), headers=as_("grid1"))
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["requests"]["status"] == "unavailable" and f["requests"]["reason"]
    assert "items" not in f["requests"]
    assert f["matches"]["status"] == "ok" and f["timebank"]["status"] == "ok"
    assert len(f["members"]) == 2


async def test_everything_down_or_slow(app_client, upstreams, as_):
    upstreams["services"] = slow
    r = await app_client.get(URL.format(H("3")), headers=as_("staff1"))
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["requests"] == {"status": "unavailable", "reason": f["requests"]["reason"]}
    assert "超时" in f["requests"]["reason"]
    assert f["matches"]["status"] == "unavailable" and f["timebank"]["status"] == "unavailable"
    assert {m["id"] for m in f["members"]} == {P("P4"), P("P5"), P("P6")}


async def test_upstream_refusing_the_caller_is_marked_forbidden(app_client, upstreams, as_):
    upstreams["services"] = services_up([])
    upstreams["matching"] = lambda request: httpx.Response(403, json={"code": "forbidden"})
    r = await app_client.get(URL.format(H("1")), headers=as_("resident1"))
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["matches"]["status"] == "forbidden"
    assert f["timebank"] == {"status": "ok", "balances": [], "withheld": [P("P1"), P("P2")]}


@pytest.mark.parametrize("name,household,status", [
    ("resident1", "1", 200), ("resident1", "2", 404), ("resident3", "1", 404), ("proxy1", "2", 404),
    ("grid1", "1", 200), ("grid1", "3", 404), ("grid3", "4", 200), ("staff2", "1", 404), ("street1", "4", 200),
    ("ops1", "4", 200), ("dept_mz", "1", 403), ("provider1", "1", 403), ("portal", "1", 403),
])
async def test_file_access_as_households(app_client, as_, name, household, status):
    r = await app_client.get(URL.format(H(household)), headers=as_(name))
    assert r.status_code == status, r.text
