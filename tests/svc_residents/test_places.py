from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.conftest import METRICS_AUTH

STAFF = dict(role="community_staff", scopes=["community:110105001001"])
OPS = dict(role="ops")


# `client` comes from tests/svc_residents/conftest.py (it gives the app a temporary field-keys file).


async def _seed_chain(client, auth):
    h = auth(**OPS)
    for body in (
        {"code": "110105", "level": "district", "name": "朝阳区"},
        {"code": "110105001", "level": "street", "name": "和平街道", "parent_code": "110105"},
        {"code": "110105001001", "level": "community", "name": "幸福社区", "parent_code": "110105001"},
    ):
        r = await client.post("/residents/v1/places", json=body, headers=h)
        assert r.status_code == 201, r.text


async def test_create_read_list_places(client, auth):
    await _seed_chain(client, auth)
    r = await client.post("/residents/v1/places", headers=auth(**STAFF),
                          json={"code": "110105001001001", "level": "grid", "name": "第一网格",
                                "parent_code": "110105001001"})
    assert r.status_code == 201, r.text
    r = await client.get("/residents/v1/places/110105001001001", headers=auth(**STAFF))
    assert r.json()["name"] == "第一网格"
    r = await client.get("/residents/v1/places", params={"limit": 2}, headers=auth(**STAFF))
    body = r.json()
    assert len(body["items"]) == 2 and body["next_cursor"]
    r2 = await client.get("/residents/v1/places", params={"limit": 2, "cursor": body["next_cursor"]},
                          headers=auth(**STAFF))
    codes = [p["code"] for p in body["items"] + r2.json()["items"]]
    assert codes == sorted(codes) and len(set(codes)) == 4


async def test_staff_outside_scope_is_forbidden(client, auth):
    await _seed_chain(client, auth)
    r = await client.post("/residents/v1/places", headers=auth(role="community_staff", scopes=["community:110105001002"]),
                          json={"code": "110105001001002", "level": "grid", "name": "x", "parent_code": "110105001001"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post("/residents/v1/places", headers=auth(role="resident", scopes=["person:p1"]),
                          json={"code": "110105001001002", "level": "grid", "name": "x", "parent_code": "110105001001"})
    assert r.status_code == 403


async def test_idempotency_key_creates_once(client, auth):
    await _seed_chain(client, auth)
    h = {**auth(**OPS), "Idempotency-Key": "k-1"}
    body = {"code": "110105001001003", "level": "grid", "name": "第三网格", "parent_code": "110105001001"}
    r1 = await client.post("/residents/v1/places", json=body, headers=h)
    r2 = await client.post("/residents/v1/places", json=body, headers=h)
    assert r1.status_code == r2.status_code == 201
    assert r2.headers["idempotency-replayed"] == "true"
    r3 = await client.post("/residents/v1/places", json={**body, "name": "别的"}, headers=h)
    assert r3.status_code == 422 and r3.json()["code"] == "idempotency_key_reused"


async def test_bad_input_writes_nothing(client, auth):
    await _seed_chain(client, auth)
    from svc_residents.models import OutboxEvent, Place

    async def counts():
        async with client.app.state.db.session() as s:
            return ((await s.execute(select(func.count()).select_from(Place))).scalar(),
                    (await s.execute(select(func.count()).select_from(OutboxEvent))).scalar())

    before = await counts()
    h = auth(**OPS)
    # malformed JSON
    r = await client.post("/residents/v1/places", content=b'{"code": ', headers={**h, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    # wrong type + unknown field
    r = await client.post("/residents/v1/places", json={"code": 5, "level": "grid", "name": "x", "colour": "red"},
                          headers=h)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"code", "colour"} <= fields
    # unknown parent (service-level rule)
    r = await client.post("/residents/v1/places", json={"code": "110105001009", "level": "community", "name": "x",
                                                         "parent_code": "110105001009"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parent_code"
    # 2 MiB body
    r = await client.post("/residents/v1/places", content=b"x" * (2 * 1024 * 1024),
                          headers={**h, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    # wrong media type
    r = await client.post("/residents/v1/places", content=b"code=1", headers={**h, "content-type": "text/plain"})
    assert r.status_code == 415
    assert await counts() == before


async def test_errors_are_problems_in_chinese_and_english(client, auth):
    r = await client.get("/residents/v1/places")
    assert r.status_code == 401
    p = r.json()
    assert p["code"] == "unauthenticated" and p["request_id"] and "令牌" in p["detail"]
    r = await client.get("/residents/v1/places", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "token" in r.json()["detail"].lower() and r.headers["content-language"] == "en"
    r = await client.get("/residents/v1/places/nope", headers=auth(**OPS))
    assert r.status_code == 404 and r.json()["code"] == "place.not_found"
    r = await client.delete("/residents/v1/places", headers=auth(**OPS))
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = await client.get("/residents/v1/places", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"


async def test_expired_and_forged_tokens(client, auth, make_token):
    from common.keys import SigningKey

    r = await client.get("/residents/v1/places", headers={"Authorization": f"Bearer {make_token('ops', ttl=-60)}"})
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    forged = make_token("ops", key=SigningKey.generate())
    r = await client.get("/residents/v1/places", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


async def test_health_ready_metrics(client, auth):
    assert (await client.get("/healthz")).json()["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    await client.get("/residents/v1/places", headers=auth(**OPS))
    r = await client.get("/metrics", headers=METRICS_AUTH)
    assert "onenet_http_requests_total" in r.text and 'service="svc_residents"' in r.text
    r = await client.get("/residents/v1/places", headers={**auth(**OPS), "X-Request-Id": "abc-123",
                                                           "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.headers["traceparent"].startswith("00-" + "a" * 32 + "-") and "b" * 16 not in r.headers["traceparent"]


@pytest.mark.parametrize("body,field,code", [
    # not a real province (GB/T 2260 province part)
    ({"code": "990105", "level": "district"}, "code", "place.division.province"),
    # a province or a city is not a district
    ({"code": "110000", "level": "district"}, "code", "place.code_level"),
    ({"code": "110100", "level": "district"}, "code", "place.code_level"),
    # a code of another level's length
    ({"code": "110105001001", "level": "street", "parent_code": "110105"}, "code", "place.code_length"),
    ({"code": "1101050010", "level": "street", "parent_code": "110105"}, "code", "place.division.format"),
    # a local number 000
    ({"code": "110105000", "level": "street", "parent_code": "110105"}, "code", "place.code_segment"),
    ({"code": "110105001000", "level": "community", "parent_code": "110105001"}, "code", "place.code_segment"),
    # a building: its grid's 15 digits plus at least 3
    ({"code": "1101050010010011", "level": "building", "parent_code": "110105001001001"}, "code",
     "place.code_length"),
    ({"code": "110105001001001000", "level": "building", "parent_code": "110105001001001"}, "code",
     "place.code_segment"),
    # the parent code is checked the same way
    ({"code": "110105001009", "level": "community", "parent_code": "990105001"}, "parent_code",
     "place.division.province"),
])
async def test_place_codes_follow_gbt2260(client, auth, body, field, code):
    from sqlalchemy import func, select

    from svc_residents.places.models import Place

    h = auth(**OPS)
    r = await client.post("/residents/v1/places", json={"name": "测试", **body}, headers=h)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, code)]
    assert problem["title"] and problem["errors"][0]["message"]
    en = await client.post("/residents/v1/places", json={"name": "测试", **body},
                           headers={**h, "Accept-Language": "en"})
    assert en.json()["errors"][0]["message"] != problem["errors"][0]["message"]  # zh by default, en on request
    async with client.app.state.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Place))).scalar() == 0


async def test_valid_codes_down_to_a_building(client, auth):
    h = auth(**OPS)
    for code, level, parent in (("110105", "district", None), ("110105001", "street", "110105"),
                                ("110105001001", "community", "110105001"),
                                ("110105001001001", "grid", "110105001001"),
                                ("110105001001001001", "building", "110105001001001"),
                                ("1101050010010010101", "building", "110105001001001")):
        r = await client.post("/residents/v1/places", json={"code": code, "level": level, "name": code,
                                                             "parent_code": parent}, headers=h)
        assert r.status_code == 201, (code, r.text)
