"""Open311 GeoReport v2 under /open311/v2/: every endpoint in JSON and XML, errors in Open311's format, public
reads without a token and without personal data."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from svc_services.open311.service import scrub
from tests.svc_services.conftest import (GRID1, GRIDW, OPS, OTHER_GRID, P1, PROXY3, RES1, STAFF, STAFF_OTHER, STREET,
                                         move, submit)

BASE = "/open311/v2"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FMTS = ["json", "xml"]
# a public matter (not `personal`): descriptions may be published once staff approved them
STREETLIGHT = {"code": "WG-SJ-001", "name": "网格事件上报", "category": "grid_event", "tier": "basic",
               "department": "community", "response_hours": 12, "resolution_hours": 48, "personal": False}


def rows(r, fmt, child="request"):
    """The document as a list of dicts (XML children flattened to their text)."""
    if fmt == "json":
        assert r.headers["content-type"].startswith("application/json")
        return r.json()
    assert r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    return [{c.tag: (c.text or "") for c in el} for el in root.findall(child)]


def error_list(r, fmt):
    if fmt == "json":
        body = r.json()
        assert isinstance(body, list) and all(set(e) == {"code", "description"} for e in body)
        return body
    root = ET.fromstring(r.content)
    assert root.tag == "errors"
    return [{"code": int(e.findtext("code")), "description": e.findtext("description")} for e in root.findall("error")]


async def post(client, token, fmt="json", data=None, headers=None):
    form = {"service_code": "YL-ZC-001", "lat": "39.9211", "long": "116.4431", "api_key": token,
            "description": "每天需要送午餐，联系电话13812345678", "attribute[meal_time]": "lunch",
            "attribute[portions]": "2", "first_name": "张", "phone": "13812345678"}
    form.update(data or {})
    form = {k: v for k, v in form.items() if v is not None}
    return await client.post(f"{BASE}/requests.{fmt}", data=form, headers=headers)


@pytest.mark.parametrize("fmt", FMTS)
async def test_discovery_services_and_definition(ready, fmt):
    client = ready
    r = await client.get(f"{BASE}/discovery.{fmt}")
    assert r.status_code == 200
    if fmt == "json":
        ep = r.json()["endpoints"][0]
        assert ep["specification"] == "http://wiki.open311.org/GeoReport_v2" and "text/xml" in ep["formats"]
    else:
        root = ET.fromstring(r.content)
        assert root.tag == "discovery"
        assert root.find("endpoints/endpoint/specification").text == "http://wiki.open311.org/GeoReport_v2"
        assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == ["application/json", "text/xml"]

    r = await client.get(f"{BASE}/services.{fmt}")  # no token: public
    assert r.status_code == 200
    services = {s["service_code"]: s for s in rows(r, fmt, "service")}
    assert set(services) == {"YL-ZC-001", "SH-WX-001", "YJ-HJ-001"}
    meal = services["YL-ZC-001"]
    assert meal["service_name"] == "老年助餐" and meal["group"] == "养老服务" and meal["type"] == "realtime"
    assert str(meal["metadata"]).lower() == "true" and str(services["SH-WX-001"]["metadata"]).lower() == "false"

    r = await client.get(f"{BASE}/services/YL-ZC-001.{fmt}")
    assert r.status_code == 200
    if fmt == "json":
        body = r.json()
        attrs = {a["code"]: a for a in body["attributes"]}
        assert body["service_code"] == "YL-ZC-001"
        assert attrs["meal_time"]["required"] is True and attrs["meal_time"]["datatype"] == "singlevaluelist"
        assert [v["key"] for v in attrs["meal_time"]["values"]] == ["lunch", "dinner"]
    else:
        root = ET.fromstring(r.content)
        assert root.tag == "service_definition" and root.findtext("service_code") == "YL-ZC-001"
        attrs = {a.findtext("code"): a for a in root.findall("attributes/attribute")}
        assert attrs["meal_time"].findtext("required") == "true"
        assert [v.findtext("key") for v in attrs["diet"].findall("values/value")] == ["soft", "low_salt"]
        assert len(attrs) == 6

    r = await client.get(f"{BASE}/services/NOPE-1.{fmt}")
    assert r.status_code == 404 and error_list(r, fmt)[0]["code"] == 404
    r = await client.get(f"{BASE}/services.yaml")
    assert r.status_code == 404 and isinstance(r.json(), list)


@pytest.mark.parametrize("fmt", FMTS)
async def test_post_request_form_encoded(ready, make_token, fmt):
    client = ready
    token = make_token("resident", user="resident1", scopes=[f"person:{P1}"])
    r = await post(client, token, fmt, {"attribute[diet][]": None})
    assert r.status_code == 201, r.text
    created = rows(r, fmt)[0]
    rid = created["service_request_id"]
    # GeoReport v2 POST: "service_request_id ... or token": the id (created at once), never both
    assert "token" not in created and "小时内响应" in created["service_notice"]
    # the internal record: same intake rules as /services/v1 (channel api, attributes typed)
    r = await client.get(f"/services/v1/requests/{rid}", headers={"Authorization": f"Bearer {make_token('ops')}"})
    body = r.json()
    assert body["channel"] == "api" and body["person_id"] == P1 and body["grid"] == GRID1
    assert body["attributes"] == {"meal_time": "lunch", "portions": 2}
    # multivaluelist as attribute[code][] and a bearer header instead of api_key
    r = await client.post(f"{BASE}/requests.{fmt}",
                          content="service_code=YL-ZC-001&address_id=" + GRID1 +
                          "&attribute%5Bmeal_time%5D=dinner&attribute%5Bdiet%5D%5B%5D=soft"
                          "&attribute%5Bdiet%5D%5B%5D=low_salt&media_url=https%3A%2F%2Fimg.example%2Fa.jpg",
                          headers={**FORM, "Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    rid2 = rows(r, fmt)[0]["service_request_id"]
    r = await client.get(f"/services/v1/requests/{rid2}", headers={"Authorization": f"Bearer {make_token('ops')}"})
    assert r.json()["attributes"] == {"meal_time": "dinner", "diet": ["soft", "low_salt"]}
    assert r.json()["description"] == "老年助餐" and r.json()["media_url"] == "https://img.example/a.jpg"


@pytest.mark.parametrize("fmt", FMTS)
async def test_post_errors_in_open311_format(ready, make_token, fmt):
    client = ready
    token = make_token("resident", user="resident1", scopes=[f"person:{P1}"])
    r = await post(client, None, fmt)
    assert r.status_code == 401 and error_list(r, fmt)[0]["code"] == 401
    r = await post(client, "not-a-token", fmt)
    assert r.status_code == 403 and error_list(r, fmt) == [{"code": 403, "description": "Invalid api_key"}]
    r = await post(client, token, fmt, {"attribute[meal_time]": None, "attribute[portions]": "two"})
    assert r.status_code == 400
    descs = [e["description"] for e in error_list(r, fmt)]
    assert any(d.startswith("attribute[meal_time]") for d in descs)
    assert any(d.startswith("attribute[portions]") for d in descs)
    r = await post(client, token, fmt, {"attribute[nope]": "1"})
    assert r.status_code == 400 and "attribute[nope]" in error_list(r, fmt)[0]["description"]
    r = await post(client, token, fmt, {"service_code": "NOPE-1"})
    assert r.status_code == 404
    r = await post(client, token, fmt, {"service_code": None})
    assert r.status_code == 400 and "service_code" in error_list(r, fmt)[0]["description"]
    r = await post(client, token, fmt, {"lat": None, "long": None})
    assert r.status_code == 400
    r = await post(client, token, fmt, {"lat": "31.23", "long": "121.47"})
    assert r.status_code == 400 and error_list(r, fmt)[0]["description"].startswith("lat/long")
    r = await post(client, token, fmt, {"lat": "north"})
    assert r.status_code == 400
    r = await post(client, token, fmt, {"description": "长" * 4001})
    assert r.status_code == 400 and "description" in error_list(r, fmt)[0]["description"]
    # a resident cannot set the account of someone else
    r = await post(client, token, fmt, {"account_id": "person-3"})
    assert r.status_code == 403 and error_list(r, fmt)[0]["code"] == 403
    # JSON bodies are not the spec's, but the form type must be accepted by the middleware
    r = await client.post(f"{BASE}/requests.{fmt}", content=b"<x/>", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert "application/x-www-form-urlencoded、multipart/form-data 或 application/json" in r.text  # what it takes


async def test_post_idempotency_key(ready, make_token):
    client = ready
    token = make_token("proxy", user="proxy1", acting_for="person-3", scopes=["community:110105001001"])
    h = {"Idempotency-Key": "kiosk-7-0001"}
    a = await post(client, token, "json", headers=h)
    b = await post(client, token, "xml", headers=h)
    assert a.status_code == b.status_code == 201
    assert rows(b, "xml")[0]["service_request_id"] == a.json()[0]["service_request_id"]
    assert (a.headers["idempotency-replayed"], b.headers["idempotency-replayed"]) == ("false", "true")
    # as declared: the replay is the 201 again with that header, and no 200 is declared
    responses = (await client.get("/openapi.json")).json()["paths"][f"{BASE}/requests.{{fmt}}"]["post"]["responses"]
    assert "200" not in responses
    assert responses["201"]["headers"]["Idempotency-Replayed"]["schema"]["enum"] == ["true", "false"]


@pytest.mark.parametrize("fmt", FMTS)
async def test_get_requests_public_filters_and_no_personal_data(ready, auth, clock, make_token, fmt):
    client = ready
    assert (await client.post("/services/v1/catalogue/items", json=STREETLIGHT, headers=auth(**OPS))).status_code == 201
    token = make_token("resident", user="resident1", scopes=[f"person:{P1}"])
    meal1 = (await post(client, token)).json()[0]["service_request_id"]
    clock.advance(days=2)
    repair = (await submit(client, auth, item_code="WG-SJ-001", location={
        "lat": 39.9211, "long": 116.4431, "address": "幸福路1号楼101，身份证110101199003071234"},
        who=STAFF)).json()["id"]
    clock.advance(days=1)
    meal2 = (await submit(client, auth, who=PROXY3, item_code="YL-ZC-001", attributes={"meal_time": "dinner"},
                          location={"grid": GRID1})).json()["id"]
    assert (await move(client, auth, meal2, "reject", STAFF, note="重复申请，联系人 13900001111")).status_code == 200

    async def get(params=""):
        r = await client.get(f"{BASE}/requests.{fmt}{params}")
        assert r.status_code == 200, r.text
        return rows(r, fmt)

    everything = await get()
    assert [d["service_request_id"] for d in everything] == [meal2, repair, meal1]   # newest first
    by_id = {d["service_request_id"]: d for d in everything}
    d1 = by_id[meal1]
    assert d1["status"] == "open" and d1["status_notes"].startswith("已提交") and d1["service_name"] == "老年助餐"
    assert d1["agency_responsible"] == "minzheng" and d1["service_code"] == "YL-ZC-001"
    assert not d1["description"]  # a personal item's: never published (and nobody published the others)
    assert float(d1["lat"]) == 39.921 and not d1["address"]      # a person's request: no address, ~100 m
    assert by_id[meal2]["status"] == "closed" and "rejected" in by_id[meal2]["status_notes"]
    d2 = by_id[repair]
    assert d2["address"] == "幸福路1号楼101，身份证110101********1234" and float(d2["lat"]) == 39.9211
    for key in ("requested_datetime", "updated_datetime", "expected_datetime", "media_url", "address_id"):
        assert key in d1
    # nothing personal anywhere in the public document
    r = await client.get(f"{BASE}/requests.{fmt}?extensions=true")
    text = r.text
    for secret in (P1, "person-3", "resident1", "proxy1", "staff1", "app-test", "张", "13812345678", "13900001111"):
        assert secret not in text, secret

    assert [d["service_request_id"] for d in await get(f"?service_request_id={meal1},{repair}")] == [repair, meal1]
    assert {d["service_request_id"] for d in await get("?service_code=YL-ZC-001")} == {meal1, meal2}
    assert {d["service_request_id"] for d in await get("?status=open")} == {meal1, repair}
    assert {d["service_request_id"] for d in await get("?status=closed")} == {meal2}
    assert len(await get("?status=open,closed")) == 3
    assert {d["service_request_id"] for d in await get("?start_date=2026-03-03T00:00:00%2B08:00")} == {repair, meal2}
    assert {d["service_request_id"] for d in await get("?end_date=2026-03-03T00:00:00Z")} == {meal1}
    assert {d["service_request_id"] for d in await get(
        "?start_date=2026-03-03T00:00:00Z&end_date=2026-03-04T12:00:00Z&service_code=WG-SJ-001")} == {repair}
    clock.advance(days=120)
    assert await get() == []      # the spec's default window: the last 90 days
    for bad in ("?status=pending", "?start_date=yesterday", "?start_date=2026-03-05T00:00:00Z&end_date=2026-03-01T00:00:00Z"):
        r = await client.get(f"{BASE}/requests.{fmt}{bad}")
        assert r.status_code == 400 and error_list(r, fmt)[0]["code"] == 400


@pytest.mark.parametrize("fmt", FMTS)
async def test_get_one_request_with_timeline_and_token(ready, auth, fmt):
    client = ready
    rid = (await submit(client, auth, who=RES1)).json()["id"]
    assert (await move(client, auth, rid, "accept", STAFF)).status_code == 200
    assert (await move(client, auth, rid, "dispatch", STAFF,
                       assignee={"kind": "provider", "id": "org-1", "name": "幸福家政"})).status_code == 200
    r = await client.get(f"{BASE}/requests/{rid}.{fmt}")
    assert r.status_code == 200
    doc = rows(r, fmt)[0]
    assert doc["service_request_id"] == rid and doc["status"] == "open" and "dispatched" in doc["status_notes"]
    assert "extended_attributes" not in doc
    r = await client.get(f"{BASE}/requests/{rid}.{fmt}?extensions=true")
    assert "org-1" not in r.text and "幸福家政" not in r.text and "staff1" not in r.text and P1 not in r.text
    if fmt == "json":
        ext = r.json()[0]["extended_attributes"]
        tl = ext["timeline"]
        assert ext["state"] == "dispatched"
        assert [(t["action"], t["role"]) for t in tl] == [("submit", "resident"), ("accept", "community_staff"),
                                                          ("dispatch", "community_staff")]
        assert set(tl[0]) == {"seq", "action", "action_name", "from_state", "to_state", "role", "datetime"}
    else:
        entries = ET.fromstring(r.content).findall("request/extended_attributes/timeline/entry")
        assert [e.findtext("action") for e in entries] == ["submit", "accept", "dispatch"]
        assert entries[1].findtext("role") == "community_staff" and entries[1].find("actor") is None
    r = await client.get(f"{BASE}/requests/nope.{fmt}")
    assert r.status_code == 404 and error_list(r, fmt)[0]["code"] == 404

    r = await client.get(f"{BASE}/tokens/{rid}.{fmt}")
    assert r.status_code == 200 and rows(r, fmt) == [{"service_request_id": rid, "token": rid}]
    r = await client.get(f"{BASE}/tokens/nope.{fmt}")
    assert r.status_code == 404


async def test_sensitive_categories_are_not_public(ready, auth):
    client = ready
    item = {"code": "XL-SD-001", "name": "心理疏导", "category": "counselling", "tier": "basic",
            "department": "weijian", "response_hours": 24, "resolution_hours": 72}
    assert (await client.post("/services/v1/catalogue/items", json=item, headers=auth(**OPS))).status_code == 201
    rid = (await submit(client, auth, item_code="XL-SD-001")).json()["id"]
    r = await client.get(f"{BASE}/requests.json")
    assert r.status_code == 200 and rid not in r.text
    assert (await client.get(f"{BASE}/requests/{rid}.json")).status_code == 404
    assert (await client.get(f"{BASE}/requests.json?service_request_id={rid}")).json() == []
    # the internal API still serves it with a token
    assert (await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).status_code == 200


@pytest.mark.parametrize("typed, masked", [
    ("电话13800010001", "电话138****0001"),
    ("电话 138-0001-0001 找张师傅", "电话 138****0001 找张师傅"),
    ("电话１３８０００１０００１", "电话138****0001"),
    ("请打+86 138 0001 0001", "请打138****0001"),
    ("＋８６－１３８－０００１－０００１，谢谢", "138****0001，谢谢"),
    ("0086 13800010001", "138****0001"),
    ("身份证110105 19800312 0112", "身份证110105********0112"),
    ("身份证 110105-1980-0312-011x 办理", "身份证 110105********011X 办理"),
    ("１１０１０５１９８００３１２０１１２", "110105********0112"),
    ("13800010001 13900020002", "**********************"),   # two numbers run together: masked whole
    ("座机 010-6512-3456", "座机 ***********"),
    # what identifies no one is left as it was
    ("3号楼2单元501室，2026-03-01 10:30 路灯不亮，约100米", "3号楼2单元501室，2026-03-01 10:30 路灯不亮，约100米"),
    ("工单 12345", "工单 12345"),
])
def test_typed_numbers_are_masked_after_normalising(typed, masked):
    """Issue 23, finding 6: separators, full-width digits and a +86 prefix got numbers past the mask."""
    assert scrub(typed) == masked


async def _feed_description(client, rid):
    r = await client.get(f"{BASE}/requests/{rid}.json")
    assert r.status_code == 200
    return r.json()[0]["description"]


async def test_a_description_is_public_only_once_staff_published_it(ready, auth):
    """Issue 23, finding 6: names and home addresses typed in free text reached the public feed. A description is
    published by staff of the request's area (or ops) after reading it; numbers are masked on top of that."""
    client = ready
    assert (await client.post("/services/v1/catalogue/items", json=STREETLIGHT, headers=auth(**OPS))).status_code == 201
    typed = "我是张伟，住幸福路1号楼101，楼道灯坏了，电话＋８６ １３８ ０００１ ０００１"
    rid = (await submit(client, auth, who=STAFF, item_code="WG-SJ-001", description=typed)).json()["id"]
    # nothing typed is public before staff published it
    assert await _feed_description(client, rid) is None
    r = await client.get(f"{BASE}/requests.xml?service_request_id={rid}")
    assert "张伟" not in r.text and "幸福路" not in r.text and "１３８" not in r.text

    url = f"/services/v1/requests/{rid}/publication"
    text = {"description": "幸福路1号楼楼道灯坏了，联系电话 138-0001-0001"}
    # who may publish: staff covering the request's grid, the street above, ops
    for who, status in ((RES1, 403), (PROXY3, 403), (GRIDW, 403), (dict(role="dept_staff", scopes=["dept:minzheng"]),
                                                                   403), (STAFF_OTHER, 404)):
        r = await client.put(url, json=text, headers=auth(**who))
        assert r.status_code == status, (who, r.text)
    assert await _feed_description(client, rid) is None
    r = await client.put(url, json=text, headers=auth(**STAFF))
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "幸福路1号楼楼道灯坏了，联系电话 138****0001"
    assert r.json()["approved_role"] == "community_staff"
    assert await _feed_description(client, rid) == "幸福路1号楼楼道灯坏了，联系电话 138****0001"
    # the street above may edit it, and withdraw it
    r = await client.put(url, json={"description": "楼道灯坏了"}, headers=auth(**STREET))
    assert r.status_code == 200 and await _feed_description(client, rid) == "楼道灯坏了"
    r = await client.put(url, json={"description": None}, headers=auth(**STREET))
    assert r.status_code == 200 and r.json()["description"] is None
    assert await _feed_description(client, rid) is None
    # the internal record keeps what was typed
    assert (await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()["description"] == typed

    # bad input names the field
    r = await client.put(url, json={}, headers=auth(**STAFF))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "description"
    r = await client.put(url, json={"description": "a\u0000b"}, headers=auth(**STAFF))
    assert r.status_code == 422
    assert (await client.put("/services/v1/requests/nope/publication", json=text,
                             headers=auth(**OPS))).status_code == 404


async def test_requests_of_personal_items_are_never_published(ready, auth):
    client = ready
    rid = (await submit(client, auth, who=STAFF, description="王秀英家水管漏水，住幸福路2号楼202")).json()["id"]
    assert await _feed_description(client, rid) is None
    r = await client.put(f"/services/v1/requests/{rid}/publication", json={"description": "水管漏水"},
                         headers=auth(**STAFF))
    assert r.status_code == 409 and r.json()["code"] == "publication.personal"
    assert await _feed_description(client, rid) is None
    # a request made by staff for nobody, of a personal item, shows no typed address either
    r = await client.get(f"{BASE}/requests/{rid}.json")
    assert not r.json()[0]["address"]
    # nor is another community's request reachable for staff: hidden
    other = (await submit(client, auth, who=STAFF_OTHER, location={"grid": OTHER_GRID})).json()["id"]
    r = await client.put(f"/services/v1/requests/{other}/publication", json={"description": "x"},
                         headers=auth(**STAFF))
    assert r.status_code == 404
