from __future__ import annotations

from tests.svc_services.conftest import (ALARM, COMMUNITY, DEPT, MEAL, OPS, REPAIR, RES1, STAFF, STAFF_OTHER, STREET,
                                         submit)


async def test_create_read_list_items(ready, auth):
    client = ready
    r = await client.get("/services/v1/catalogue/items/YL-ZC-001", headers=auth(**RES1))
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == 1 and body["category_name"] == "养老服务"
    assert body["materials"][0]["source"] == "exchange" and body["materials"][0]["department"] == "minzheng"
    assert [a["code"] for a in body["attributes"]][0] == "meal_time"
    r = await client.get("/services/v1/catalogue/items", params={"limit": 2}, headers=auth(**RES1))
    page = r.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    r2 = await client.get("/services/v1/catalogue/items", params={"limit": 2, "cursor": page["next_cursor"]},
                          headers=auth(**RES1))
    codes = [i["code"] for i in page["items"] + r2.json()["items"]]
    assert codes == sorted(codes) and len(codes) == 3
    r = await client.get("/services/v1/catalogue/items", params={"category": "emergency"}, headers=auth(**RES1))
    assert [i["code"] for i in r.json()["items"]] == ["YJ-HJ-001"]


async def test_only_staff_edit_and_unauthenticated_refused(ready, auth):
    client = ready
    r = await client.post("/services/v1/catalogue/items", json={**MEAL, "code": "X-1"}, headers=auth(**RES1))
    assert r.status_code == 403
    r = await client.get("/services/v1/catalogue/items")
    assert r.status_code == 401
    r = await client.post("/services/v1/catalogue/items", json=MEAL, headers=auth(**OPS))
    assert r.status_code == 409 and r.json()["code"] == "catalogue.exists"


async def test_bad_item_definitions(client, auth):
    h = auth(**STAFF)
    bad_list = {**MEAL, "code": "B-1", "attributes": [{"code": "x", "datatype": "singlevaluelist",
                                                       "description": "x"}]}
    r = await client.post("/services/v1/catalogue/items", json=bad_list, headers=h)
    assert r.status_code == 422
    bad_type = {**MEAL, "code": "B-2", "attributes": [{"code": "x", "datatype": "blob", "description": "x"}]}
    r = await client.post("/services/v1/catalogue/items", json=bad_type, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("attributes")
    r = await client.post("/services/v1/catalogue/items", json={**MEAL, "code": "B-3", "extra": 1}, headers=h)
    assert r.status_code == 422
    r = await client.post("/services/v1/catalogue/items", json={**MEAL, "code": "B-4", "materials": [
        {"code": "m", "name": "m", "source": "exchange"}]}, headers=h)
    assert r.status_code == 422


async def test_versioning_keeps_requests_on_their_version(ready, auth):
    client = ready
    r = await submit(client, auth, item_code="YL-ZC-001", attributes={"meal_time": "lunch"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert r.json()["item_version"] == 1
    edited = {k: v for k, v in MEAL.items() if k != "code"}
    edited["name"] = "老年助餐（含送餐）"
    edited["attributes"] = edited["attributes"] + [
        {"code": "floor", "datatype": "number", "description": "楼层", "required": True}]
    r = await client.put("/services/v1/catalogue/items/YL-ZC-001", json={**edited, "version": 1}, headers=auth(**DEPT))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["name"] == "老年助餐（含送餐）"
    # stale edit
    r = await client.put("/services/v1/catalogue/items/YL-ZC-001", json={**edited, "version": 1}, headers=auth(**DEPT))
    assert r.status_code == 409 and r.json()["code"] == "version_conflict"
    # the old request still points at version 1, whose content is unchanged
    r = await client.get(f"/services/v1/requests/{rid}", headers=auth(**RES1))
    assert r.json()["item_version"] == 1
    r = await client.get("/services/v1/catalogue/items/YL-ZC-001", params={"version": 1}, headers=auth(**RES1))
    assert r.json()["name"] == "老年助餐" and r.json()["current_version"] == 2
    r = await client.get("/services/v1/catalogue/items/YL-ZC-001/versions", headers=auth(**RES1))
    assert [v["version"] for v in r.json()] == [1, 2]
    # new requests use version 2 and its new required attribute
    r = await submit(client, auth, item_code="YL-ZC-001", attributes={"meal_time": "lunch"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "attributes.floor"
    r = await submit(client, auth, item_code="YL-ZC-001", attributes={"meal_time": "lunch", "floor": 3})
    assert r.status_code == 201 and r.json()["item_version"] == 2


async def test_withdrawn_item_refuses_requests(ready, auth):
    client = ready
    r = await client.delete("/services/v1/catalogue/items/SH-WX-001", headers=auth(**OPS))
    assert r.status_code == 200 and r.json()["active"] is False
    r = await submit(client, auth)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "item_code"
    r = await client.post("/services/v1/catalogue/items/SH-WX-001/activate", headers=auth(**OPS))
    assert r.json()["active"] is True
    assert (await submit(client, auth)).status_code == 201


async def test_activate_honours_idempotency_key(ready, auth):
    from sqlalchemy import func, select

    from svc_services.base import OutboxEvent

    client = ready
    staff = auth(**OPS)  # SH-WX-001 is district-wide: ops maintain it
    assert (await client.delete("/services/v1/catalogue/items/SH-WX-001", headers=staff)).status_code == 200
    headers = {**staff, "Idempotency-Key": "activate-1"}
    first = await client.post("/services/v1/catalogue/items/SH-WX-001/activate", headers=headers)
    assert first.status_code == 200 and first.json()["active"] is True
    assert first.headers["idempotency-replayed"] == "false"
    # withdrawn again in between: the retry replays the first answer and changes nothing
    assert (await client.delete("/services/v1/catalogue/items/SH-WX-001", headers=staff)).status_code == 200
    again = await client.post("/services/v1/catalogue/items/SH-WX-001/activate", headers=headers)
    assert again.status_code == 200 and again.headers["idempotency-replayed"] == "true"
    assert again.json() == first.json()
    r = await client.get("/services/v1/catalogue/items/SH-WX-001", headers=staff)
    assert r.json()["active"] is False
    async with client.app.state.db.session() as s:
        n = (await s.execute(select(func.count()).select_from(OutboxEvent)
                             .where(OutboxEvent.type == "catalogue.item_activated"))).scalar_one()
    assert n == 1
    # a new key activates; a refused call is not remembered
    r = await client.post("/services/v1/catalogue/items/SH-WX-001/activate",
                          headers={**staff, "Idempotency-Key": "activate-2"})
    assert r.status_code == 200 and r.json()["active"] is True and r.headers["idempotency-replayed"] == "false"
    r = await client.post("/services/v1/catalogue/items/SH-WX-001/activate",
                          headers={**auth(**RES1), "Idempotency-Key": "activate-3"})
    assert r.status_code == 403
    r = await client.post("/services/v1/catalogue/items/SH-WX-001/activate",
                          headers={**auth(**RES1), "Idempotency-Key": "activate-3"})
    assert r.status_code == 403


def _content(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != "code"}


async def test_catalogue_writes_belong_to_the_owner_and_the_levels_above(ready, auth):
    """Issue 23, finding 3: a community worker withdrew district-wide items owned by departments and the
    emergency one-key call, and residents' submissions failed. Writes belong to the item's owning department,
    to staff of the area it is offered in or above, and to ops."""
    client = ready
    # a community worker may not withdraw, re-activate or edit the district-wide catalogue
    for code in ("YJ-HJ-001", "YL-ZC-001", "SH-WX-001"):
        r = await client.delete(f"/services/v1/catalogue/items/{code}", headers=auth(**STAFF))
        assert r.status_code == 403 and r.json()["code"] == "catalogue.not_owner", (code, r.text)
        assert (await client.post(f"/services/v1/catalogue/items/{code}/activate",
                                  headers=auth(**STAFF))).status_code == 403
    r = await client.put("/services/v1/catalogue/items/YJ-HJ-001", json={**_content(ALARM), "version": 1},
                         headers=auth(**STAFF))
    assert r.status_code == 403 and r.json()["code"] == "catalogue.not_owner"
    # nor may street staff: the district-wide catalogue lies above the street
    assert (await client.delete("/services/v1/catalogue/items/YJ-HJ-001", headers=auth(**STREET))).status_code == 403
    # the one-key call is still in force: residents can still call for help
    assert (await client.get("/services/v1/catalogue/items/YJ-HJ-001", headers=auth(**RES1))).json()["active"] is True
    r = await submit(client, auth, item_code="YJ-HJ-001", description="老人摔倒")
    assert r.status_code == 201, r.text

    # a department maintains its own items, not another department's or the communities'
    meal = {**_content(MEAL), "version": 1}
    r = await client.put("/services/v1/catalogue/items/YL-ZC-001", json=meal, headers=auth(**DEPT))
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    weijian = dict(role="dept_staff", user="wj1", scopes=["dept:weijian"])
    assert (await client.delete("/services/v1/catalogue/items/YL-ZC-001", headers=auth(**weijian))).status_code == 403
    assert (await client.delete("/services/v1/catalogue/items/SH-WX-001", headers=auth(**DEPT))).status_code == 403
    # and does not hand its item to another department
    r = await client.put("/services/v1/catalogue/items/YL-ZC-001", json={**meal, "version": 2, "department": "renshe"},
                         headers=auth(**DEPT))
    assert r.status_code == 403 and r.json()["code"] == "catalogue.not_owner"
    # nor create one in another department's name
    r = await client.post("/services/v1/catalogue/items", json={**MEAL, "code": "MZ-2", "department": "renshe"},
                          headers=auth(**DEPT))
    assert r.status_code == 403

    # a community's own item: its staff and the street above it maintain it, another community's staff do not
    own = {**REPAIR, "code": "XF-TS-001", "name": "幸福社区特色理发", "scope": COMMUNITY}
    assert (await client.post("/services/v1/catalogue/items", json={**own, "scope": "110105001002"},
                              headers=auth(**STAFF))).status_code == 403
    assert (await client.post("/services/v1/catalogue/items", json={**own, "code": "XF-TS-002", "scope": None},
                              headers=auth(**STAFF))).status_code == 403
    r = await client.post("/services/v1/catalogue/items", json=own, headers=auth(**STAFF))
    assert r.status_code == 201 and r.json()["scope"] == COMMUNITY, r.text
    edited = {**_content(own), "name": "幸福社区特色理发（上门）", "version": 1}
    edited.pop("scope")
    r = await client.put("/services/v1/catalogue/items/XF-TS-001", json=edited, headers=auth(**STAFF_OTHER))
    assert r.status_code == 403
    assert (await client.delete("/services/v1/catalogue/items/XF-TS-001",
                                headers=auth(**STAFF_OTHER))).status_code == 403
    r = await client.put("/services/v1/catalogue/items/XF-TS-001", json=edited, headers=auth(**STAFF))
    assert r.status_code == 200 and r.json()["scope"] == COMMUNITY, r.text
    r = await client.delete("/services/v1/catalogue/items/XF-TS-001", headers=auth(**STREET))
    assert r.status_code == 200 and r.json()["active"] is False
    # ops maintain everything
    r = await client.post("/services/v1/catalogue/items/XF-TS-001/activate", headers=auth(**OPS))
    assert r.status_code == 200 and r.json()["active"] is True
    # a scope that is not a division code is refused as input
    r = await client.post("/services/v1/catalogue/items", json={**own, "code": "XF-TS-003", "scope": "xingfu"},
                          headers=auth(**STAFF))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "scope"
