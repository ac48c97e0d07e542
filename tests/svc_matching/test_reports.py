"""Gap and duplicate reports."""
from __future__ import annotations

from tests.svc_matching.conftest import HOME, USCC, make_org, service_body
from tests.svc_matching.test_offers import need_body


async def test_gaps_and_duplicates(client, staff, auth):
    org1, loc1 = await make_org(client, staff)
    org2, loc2 = await make_org(client, staff, uscc=USCC[1], name="安康便民服务社", lat=HOME[0] + 0.003)
    org3, loc3 = await make_org(client, staff, uscc=USCC[2], name="远处的机构", lat=HOME[0] + 0.05)
    s1 = (await client.post("/matching/v1/services", headers=staff, json=service_body(org1, loc1))).json()
    s2 = (await client.post("/matching/v1/services", headers=staff, json=service_body(org2, loc2))).json()
    await client.post("/matching/v1/services", headers=staff, json=service_body(org3, loc3))
    await client.post("/matching/v1/needs", headers=staff, json=need_body())                       # served
    await client.post("/matching/v1/needs", headers=staff, json=need_body(category="legal"))      # nobody
    await client.post("/matching/v1/needs", headers=staff, json=need_body(requester_age=30))      # too young
    r = await client.get("/matching/v1/reports/gaps", params={"place_code": "110105001001"}, headers=staff)
    body = r.json()
    assert r.status_code == 200 and body["open_needs"] == 3 and body["unmet_needs"] == 2
    cats = {g["category"]: g for g in body["groups"]}
    assert cats["legal"]["excluded_by"]["category"]["count"] == 3
    assert cats["elderly_care"]["excluded_by"]["eligibility_age"]["count"] == 3
    assert cats["legal"]["grid"] == "110105001001001"

    r = await client.get("/matching/v1/reports/duplicates", headers=staff, params={"place_code": "110105001001"})
    body = r.json()
    assert body["resources"] == 3 and body["duplicated_resources"] == 2 and body["duplicate_rate"] == 0.6667
    assert {s["id"] for s in body["groups"][0]["services"]} == {s1["id"], s2["id"]}
    other = auth(role="community_staff", scopes=["community:110105001002"])
    assert (await client.get("/matching/v1/reports/gaps", headers=other)).status_code == 403
    assert (await client.get("/matching/v1/reports/gaps", headers=auth(role="resident"))).status_code == 403
