"""Resource directory writes and the HSDS 3.0 read API."""
from __future__ import annotations

from sqlalchemy import func, select

from tests.svc_matching.conftest import USCC, make_org, service_body


async def test_publish_service_and_read_hsds(client, staff):
    org, loc = await make_org(client, staff)
    assert org["organization_identifiers"][0]["identifier"] == USCC[0]
    r = await client.post("/matching/v1/services", headers=staff, json=service_body(org, loc))
    assert r.status_code == 201, r.text
    svc = r.json()
    assert {a["value"] for a in svc["attributes"]} == {"elderly_care", "elderly"}
    assert svc["capacities"][0]["maximum"] == 2
    assert svc["schedules"][0]["byday"] == "MO,TU,WE,TH,FR"
    assert svc["service_at_locations"][0]["location"]["latitude"] == loc["latitude"]

    r = await client.get("/matching/v1/hsds/", headers=staff)
    assert r.json()["version"] == "3.0"
    r = await client.get(f"/matching/v1/hsds/services/{svc['id']}", headers=staff)
    assert r.status_code == 200 and r.json()["organization"]["id"] == org["id"]
    r = await client.get(f"/matching/v1/hsds/organizations/{org['id']}", headers=staff)
    assert [s["id"] for s in r.json()["services"]] == [svc["id"]] and len(r.json()["locations"]) == 1
    term = next(a["taxonomy_term_id"] for a in svc["attributes"] if a["value"] == "elderly_care")
    r = await client.get("/matching/v1/hsds/services", params={"taxonomy_term_id": term}, headers=staff)
    assert r.json()["total_items"] == 1
    r = await client.get("/matching/v1/hsds/services", params={"search": "不存在"}, headers=staff)
    assert r.json()["total_items"] == 0 and r.json()["empty"] is True
    assert (await client.get("/matching/v1/hsds/services/nope", headers=staff)).status_code == 404


async def test_hsds_pagination(client, staff):
    r = await client.get("/matching/v1/hsds/taxonomy_terms", params={"per_page": 10, "page": 1}, headers=staff)
    body = r.json()
    assert body["total_items"] == 26 and body["total_pages"] == 3 and body["page_number"] == 1
    assert body["size"] == 10 and body["first_page"] and not body["last_page"] and not body["empty"]
    r = await client.get("/matching/v1/hsds/taxonomy_terms", params={"per_page": 10, "page": 3}, headers=staff)
    body3 = r.json()
    assert body3["size"] == 6 and body3["last_page"] and not body3["first_page"]
    r = await client.get("/matching/v1/hsds/taxonomy_terms", params={"per_page": 10, "page": 4}, headers=staff)
    assert r.json()["empty"] is True and r.json()["contents"] == []
    r = await client.get("/matching/v1/hsds/taxonomy_terms", params={"taxonomy": "eligibility"}, headers=staff)
    assert r.json()["total_items"] == 11
    r = await client.get("/matching/v1/hsds/organizations", params={"per_page": 0}, headers=staff)
    assert r.status_code == 422


async def test_directory_writes_need_staff_and_token(client, auth):
    r = await client.post("/matching/v1/organizations", headers=auth(role="resident", scopes=["person:p1"]),
                          json={"name": "x", "uscc": USCC[0]})
    assert r.status_code == 403
    assert (await client.get("/matching/v1/hsds/services")).status_code == 401
    r = await client.post("/matching/v1/organizations", headers=auth(role="community_staff",
                                                                     scopes=["community:110105001002"]),
                          json={"name": "x", "uscc": USCC[0], "community": "110105001001"})
    assert r.status_code == 403


async def test_bad_directory_input_names_the_field_and_writes_nothing(client, staff):
    from svc_matching.models import Organization, OutboxEvent, Service, ServiceAttribute, ServiceCapacity

    org, loc = await make_org(client, staff)
    _, elsewhere = await make_org(client, staff, uscc=USCC[1], name="阳光助残服务站")

    async def counts():
        async with client.app.state.db.session() as s:
            return [(await s.execute(select(func.count()).select_from(m))).scalar()
                    for m in (Organization, Service, ServiceAttribute, ServiceCapacity, OutboxEvent)]

    before = await counts()

    async def bad(path, body, field):
        r = await client.post(path, headers=staff, json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], r.json()

    await bad("/matching/v1/organizations", {"name": "x", "uscc": "52110105MA01AB125M"}, "uscc")
    await bad("/matching/v1/organizations", {"name": "x", "uscc": "52110105MA01AB12"}, "uscc")
    await bad("/matching/v1/services", service_body(org, loc, capacity={"maximum": -1}), "capacity.maximum")
    await bad("/matching/v1/services", service_body(org, loc, categories=["elderly_care", "no_such"]), "categories.1")
    await bad("/matching/v1/services", service_body(org, loc, eligibility=["martian"]), "eligibility.0")
    await bad("/matching/v1/services", service_body(org, loc, schedules=[
        {"byday": "MO", "opens_at": "08:00", "closes_at": "09:00"},
        {"byday": "TU", "opens_at": "12:00", "closes_at": "11:00"}]), "schedules.1.closes_at")
    await bad("/matching/v1/services", service_body(org, loc, minimum_age=70, maximum_age=60), "maximum_age")
    await bad("/matching/v1/services", service_body(org, loc, surprise=1), "surprise")
    # a location unknown, or of another organisation, is the same bad reference
    await bad("/matching/v1/services", service_body(org, loc, location_ids=["no-such-location"]), "location_ids.0")
    await bad("/matching/v1/services", service_body(org, loc, location_ids=[loc["id"], elsewhere["id"]]),
              "location_ids.1")
    await bad(f"/matching/v1/organizations/{org['id']}/locations", {"name": "x", "latitude": 91, "longitude": 116},
              "latitude")
    await bad(f"/matching/v1/organizations/{org['id']}/locations", {"name": "x", "latitude": 39, "longitude": -181},
              "longitude")
    assert await counts() == before
    r = await client.post("/matching/v1/organizations", headers={**staff, "Accept-Language": "en"},
                          json={"name": "dup", "uscc": USCC[0]})
    assert r.status_code == 409 and "already registered" in r.json()["detail"]


async def test_staff_adds_taxonomy_term(client, staff):
    r = await client.post("/matching/v1/taxonomy_terms", headers=staff,
                          json={"taxonomy": "category", "code": "bathing", "name": "助浴服务"})
    assert r.status_code == 201
    r = await client.post("/matching/v1/taxonomy_terms", headers=staff,
                          json={"taxonomy": "category", "code": "bathing", "name": "助浴服务"})
    assert r.status_code == 409
