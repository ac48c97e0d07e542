from __future__ import annotations

from sqlalchemy import func, select

from tests.svc_services.conftest import (GRID1, GRID2, GRIDW, GRIDW2, OPS, OTHER_GRID, P1, P3, PROVIDER, PROXY3, RES1,
                                         RES3, STAFF, STAFF_OTHER, STREET, move, submit)


async def _count(client, model):
    async with client.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar()


async def test_resident_submits_and_reads_back(ready, auth):
    client = ready
    html = "<script>alert(1)</script> 水管 <b>漏水</b>"
    r = await submit(client, auth, description=html, location={"grid": GRID1, "address": "幸福路1号楼101"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "submitted" and body["version"] == 1 and body["person_id"] == P1
    assert body["description"] == html  # stored and returned verbatim, as text
    assert body["community"] == "110105001001" and body["grid"] == GRID1 and body["priority"] == "normal"
    assert body["proxy_user"] is None and "cancel" in body["allowed_actions"]
    r = await client.get(f"/services/v1/requests/{body['id']}", headers=auth(**RES1))
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    tl = r.json()["timeline"]
    assert len(tl) == 1 and tl[0]["action"] == "submit" and tl[0]["role"] == "resident"


async def test_proxy_submission_records_both(ready, auth):
    client = ready
    r = await submit(client, auth, who=PROXY3, channel="kiosk")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["person_id"] == P3 and body["proxy_user"] == "app-test/proxy1" and body["priority"] == "urgent"
    r = await client.get(f"/services/v1/requests/{body['id']}", headers=auth(**RES3))
    assert r.status_code == 200
    assert r.json()["timeline"][0]["acting_for"] == P3 and r.json()["timeline"][0]["role"] == "proxy"
    # a proxy cannot submit for someone else
    r = await submit(client, auth, who=PROXY3, person_id=P1)
    assert r.status_code == 403
    r = await submit(client, auth, who=RES1, person_id=P3)
    assert r.status_code == 403


async def test_location_by_lat_long_and_bad_locations(ready, auth):
    client = ready
    r = await submit(client, auth, location={"lat": 39.9229, "long": 116.4459})
    assert r.status_code == 201 and r.json()["grid"] == GRID2
    r = await submit(client, auth, location={"lat": 31.23, "long": 121.47})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "location"
    r = await submit(client, auth, location={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "location.grid"
    r = await submit(client, auth, location={"grid": "110105009009009"})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "location.grid_unknown"
    r = await submit(client, auth, location={"lat": 39.92})
    assert r.status_code == 422
    # a grid worker on patrol needs no location: their grid is used
    r = await submit(client, auth, who=GRIDW, channel="grid_patrol", location={})
    assert r.status_code == 201 and r.json()["grid"] == GRID1 and r.json()["person_id"] is None
    r = await submit(client, auth, who=GRIDW, channel="grid_patrol", location={"grid": OTHER_GRID})
    assert r.status_code == 403
    r = await submit(client, auth, who=RES1, channel="grid_patrol")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"


async def test_bad_input_writes_nothing(ready, auth):
    client = ready
    from svc_services.models import OutboxEvent, ServiceRequest, TimelineEntry
    before = [await _count(client, m) for m in (ServiceRequest, TimelineEntry, OutboxEvent)]
    r = await submit(client, auth, item_code="NOPE-1")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "item_code"
    r = await submit(client, auth, description="长" * 4001)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "description"
    r = await submit(client, auth, channel="fax")
    assert r.status_code == 422
    r = await submit(client, auth, unknown=1)
    assert r.status_code == 422
    r = await submit(client, auth, item_code="YL-ZC-001", attributes={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "attributes.meal_time"
    r = await submit(client, auth, item_code="YL-ZC-001",
                     attributes={"meal_time": "breakfast", "portions": "two", "start_on": "tomorrow",
                                 "diet": ["sweet"], "contact": 5, "bogus": 1})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"attributes.meal_time", "attributes.portions", "attributes.start_on", "attributes.diet",
                      "attributes.contact", "attributes.bogus"}
    r = await submit(client, auth, priority="emergency")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "priority"
    assert [await _count(client, m) for m in (ServiceRequest, TimelineEntry, OutboxEvent)] == before
    r = await submit(client, auth, item_code="YL-ZC-001",
                     attributes={"meal_time": "lunch", "portions": 2, "start_on": "2026-03-03T11:00:00+08:00",
                                 "diet": ["soft", "low_salt"], "remark": "少油", "contact": "张伟"})
    assert r.status_code == 201, r.text


async def test_emergency_priority_and_deadlines(ready, auth, clock):
    client = ready
    r = await submit(client, auth, item_code="YJ-HJ-001", description="一键呼叫")
    body = r.json()
    assert body["priority"] == "emergency"
    from datetime import datetime
    assert (datetime.fromisoformat(body["response_due_at"]) - clock.now()).total_seconds() == 60
    assert (datetime.fromisoformat(body["start_due_at"]) - clock.now()).total_seconds() == 180


async def test_idempotent_submission(ready, auth):
    client = ready
    from svc_services.models import ServiceRequest
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "灯坏了", "location": {"grid": GRID1}}
    h = {**auth(**RES1), "Idempotency-Key": "kiosk-42"}
    r1 = await client.post("/services/v1/requests", json=body, headers=h)
    r2 = await client.post("/services/v1/requests", json=body, headers=h)
    assert r1.status_code == r2.status_code == 201 and r1.json()["id"] == r2.json()["id"]
    assert r2.headers["idempotency-replayed"] == "true"
    assert await _count(client, ServiceRequest) == 1
    r3 = await client.post("/services/v1/requests", json={**body, "description": "别的"}, headers=h)
    assert r3.status_code == 422 and r3.json()["code"] == "idempotency_key_reused"


async def test_object_level_visibility(ready, auth):
    client = ready
    mine = (await submit(client, auth, who=RES1)).json()["id"]
    theirs = (await submit(client, auth, who=RES3, location={"grid": GRID2})).json()["id"]
    other = (await submit(client, auth, who=OPS, location={"grid": OTHER_GRID})).json()["id"]
    assert (await client.get(f"/services/v1/requests/{theirs}", headers=auth(**RES1))).status_code == 404
    assert (await client.get(f"/services/v1/requests/{mine}", headers=auth(**RES1))).status_code == 200
    # proxy acting for P3 sees P3's only
    assert (await client.get(f"/services/v1/requests/{theirs}", headers=auth(**PROXY3))).status_code == 200
    assert (await client.get(f"/services/v1/requests/{mine}", headers=auth(**PROXY3))).status_code == 404
    # grid worker: own grid only; community staff: own community; street: all three
    assert (await client.get(f"/services/v1/requests/{mine}", headers=auth(**GRIDW))).status_code == 200
    assert (await client.get(f"/services/v1/requests/{theirs}", headers=auth(**GRIDW))).status_code == 404
    assert (await client.get(f"/services/v1/requests/{other}", headers=auth(**STAFF))).status_code == 404
    assert (await client.get(f"/services/v1/requests/{other}", headers=auth(**STAFF_OTHER))).status_code == 200

    async def ids(who, **params):
        r = await client.get("/services/v1/requests", params=params, headers=auth(**who))
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()["items"]}

    assert await ids(RES1) == {mine}
    assert await ids(PROXY3) == {theirs}
    assert await ids(GRIDW) == {mine}
    assert await ids(GRIDW2) == {theirs}
    assert await ids(STAFF) == {mine, theirs}
    assert await ids(STREET) == {mine, theirs, other}
    assert await ids(PROVIDER) == set()
    # transitions on requests one cannot see are 404, not 403 (no existence leak)
    r = await move(client, auth, other, "accept", STAFF, version=1)
    assert r.status_code == 404
    r = await client.get("/services/v1/requests", headers=auth(role="evaluator", scopes=["district:110105"]))
    assert r.status_code == 403


async def test_staff_queue_filters_and_pagination(ready, auth):
    client = ready
    created = []
    for i in range(5):
        r = await submit(client, auth, who=RES1, channel="app" if i % 2 else "phone")
        created.append(r.json()["id"])
    await submit(client, auth, item_code="YJ-HJ-001", description="呼叫")
    await move(client, auth, created[0], "accept", STAFF)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, "state": ["submitted"]}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/services/v1/requests", params=params, headers=auth(**STAFF))
        page = r.json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen, reverse=True)
    r = await client.get("/services/v1/requests", params={"priority": "emergency"}, headers=auth(**STAFF))
    assert len(r.json()["items"]) == 1
    r = await client.get("/services/v1/requests", params={"channel": "phone"}, headers=auth(**STAFF))
    assert len(r.json()["items"]) == 3
    r = await client.get("/services/v1/requests", params={"state": ["accepted", "dispatched"]}, headers=auth(**STAFF))
    assert [i["id"] for i in r.json()["items"]] == [created[0]]
    r = await client.get("/services/v1/requests", params={"overdue": "false", "grid": GRID1}, headers=auth(**STAFF))
    assert len(r.json()["items"]) == 6
    r = await client.get("/services/v1/requests", params={"state": ["nonsense"]}, headers=auth(**STAFF))
    assert r.status_code == 422


async def test_possible_duplicates_within_50m_and_72h(ready, auth, clock):
    client = ready
    here = {"lat": 39.92100, "long": 116.44300}
    first = (await submit(client, auth, who=RES1, location=here)).json()
    assert first["possible_duplicates"] == []
    clock.advance(hours=10)
    near = {"lat": 39.92130, "long": 116.44300}   # ≈ 33 m north
    far = {"lat": 39.92200, "long": 116.44300}    # ≈ 111 m north
    r = await submit(client, auth, who=RES1, location=near)
    dups = r.json()["possible_duplicates"]
    assert [d["id"] for d in dups] == [first["id"]] and 30 < dups[0]["distance_m"] < 36
    assert (await submit(client, auth, who=RES1, location=far)).json()["possible_duplicates"] == []
    # another item at the same spot is not a duplicate
    other = await submit(client, auth, who=RES1, location=here, item_code="YJ-HJ-001")
    assert other.json()["possible_duplicates"] == []
    # another resident is not shown someone else's request; staff in scope are
    assert (await submit(client, auth, who=RES3, location=here)).json()["possible_duplicates"] == []
    second = await submit(client, auth, who=STAFF, location=here, channel="counter")
    assert first["id"] in {d["id"] for d in second.json()["possible_duplicates"]}
    r = await client.get(f"/services/v1/requests/{first['id']}/duplicates", headers=auth(**STAFF))
    assert len(r.json()) >= 3
    # after 72 hours it no longer counts
    clock.advance(hours=72)
    r = await submit(client, auth, who=STAFF, location=here, channel="counter")
    assert first["id"] not in {d["id"] for d in r.json()["possible_duplicates"]}


async def test_possible_duplicates_by_grid_when_only_a_grid_is_given(ready, auth, clock):
    client = ready
    first = (await submit(client, auth, who=RES1, channel="kiosk")).json()   # grid only, as a kiosk does
    assert first["possible_duplicates"] == []
    clock.advance(hours=10)
    r = (await submit(client, auth, who=RES1, channel="kiosk")).json()
    assert [(d["id"], d["match"], d["grid"], d["distance_m"]) for d in r["possible_duplicates"]] == [
        (first["id"], "grid", GRID1, None)]
    # another grid, another item: not duplicates
    assert (await submit(client, auth, who=RES1, location={"grid": GRID2})).json()["possible_duplicates"] == []
    assert (await submit(client, auth, who=RES1, item_code="YJ-HJ-001")).json()["possible_duplicates"] == []
    # a lat/long submission in that grid is offered the grid-only ones (nothing to measure them against)
    r = (await submit(client, auth, who=RES1, location={"lat": 39.9211, "long": 116.4431})).json()
    assert r["grid"] == GRID1
    assert {d["id"] for d in r["possible_duplicates"]} == {first["id"], r["possible_duplicates"][0]["id"]}
    assert {d["match"] for d in r["possible_duplicates"]} == {"grid"}
    # newest first, only open requests, only what the caller may see
    latest = (await submit(client, auth, who=STAFF, channel="counter")).json()
    ids = [d["id"] for d in latest["possible_duplicates"]]
    assert ids[0] != first["id"] and first["id"] in ids and len(ids) == 3
    assert (await submit(client, auth, who=RES3, channel="kiosk")).json()["possible_duplicates"] == []
    assert (await move(client, auth, first["id"], "cancel", RES1)).status_code == 200
    r = await client.get(f"/services/v1/requests/{latest['id']}/duplicates", headers=auth(**STAFF))
    assert r.status_code == 200 and first["id"] not in {d["id"] for d in r.json()}
    # after 72 hours they no longer count
    clock.advance(hours=73)
    assert (await submit(client, auth, who=STAFF, channel="counter")).json()["possible_duplicates"] == []
