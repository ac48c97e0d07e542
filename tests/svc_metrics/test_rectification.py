"""Rectification cases (整改): opened by the scan when satisfaction < 80%, advanced by staff of that place."""
from __future__ import annotations

from datetime import timedelta

from tests.svc_metrics.conftest import C1, C2, G1, G3, NOW, request_flow

H = timedelta(hours=1)
D = timedelta(days=1)


async def opened_case(client, ops, post) -> dict:
    events = []
    for i, r in enumerate([5, 2, 3, 4, 1]):        # C1: 40% satisfied
        events += request_flow(f"a{i}", NOW - 10 * D, grid=G1, rating=r, steps={"rated": H})
    for i, r in enumerate([5, 5, 4, 4, 5]):        # C2: 100%
        events += request_flow(f"b{i}", NOW - 10 * D, grid=G3, rating=r, steps={"rated": H})
    await post(events)
    r = await client.post("/metrics/v1/warnings/scan", headers=ops)
    assert r.status_code == 200, r.text
    r = await client.get("/metrics/v1/rectifications", headers=ops)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(c["scope"], c["status"]) for c in items] == [(C1, "opened")]
    # A second scan opens nothing more.
    await client.post("/metrics/v1/warnings/scan", headers=ops)
    assert len((await client.get("/metrics/v1/rectifications", headers=ops)).json()["items"]) == 1
    return items[0]


async def test_low_satisfaction_opens_a_case_with_its_evidence(client, ops, post):
    case = await opened_case(client, ops, post)
    assert case["evidence"]["satisfaction_rate"] == 40.0 and case["opened_by"] == "system"
    assert case["status_zh"] == "已立案" and case["history"][0]["status"] == "opened"
    warnings = (await client.get("/metrics/v1/warnings", params={"kind": "low_satisfaction"}, headers=ops)).json()
    assert warnings["items"][0]["id"] == case["warning_id"]


async def test_lifecycle_by_staff_of_that_community(client, ops, auth, post):
    case = await opened_case(client, ops, post)
    url = f"/metrics/v1/rectifications/{case['id']}"
    staff = auth(role="community_staff", user="cs1", scopes=[f"community:{C1}"])
    street = auth(role="street_staff", user="st1", scopes=[f"street:{C1[:9]}"])
    # Closing straight away is not a step of the lifecycle.
    r = await client.post(f"{url}/advance", json={"status": "closed", "note": "x"}, headers=staff)
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    r = await client.post(f"{url}/advance", json={"status": "in_progress", "note": "入户回访"}, headers=staff)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["started_by"]) == ("in_progress", "cs1") or r.json()["started_by"].endswith("cs1")
    # Closing needs a note.
    r = await client.post(f"{url}/advance", json={"status": "closed"}, headers=street)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "note"
    r = await client.post(f"{url}/advance", json={"status": "closed", "note": "已整改，回访满意"}, headers=street)
    assert r.status_code == 200
    body = (await client.get(url, headers=staff)).json()
    assert body["status"] == "closed" and body["close_note"] == "已整改，回访满意"
    assert [h["status"] for h in body["history"]] == ["opened", "in_progress", "closed"]
    assert all(h["at"] for h in body["history"]) and body["closed_by"].endswith("st1")
    r = await client.post(f"{url}/advance", json={"status": "closed", "note": "again"}, headers=staff)
    assert r.status_code == 409


async def test_object_level_access(client, ops, auth, post):
    case = await opened_case(client, ops, post)
    url = f"/metrics/v1/rectifications/{case['id']}"
    evaluator = auth(role="evaluator", user="ev1")
    assert (await client.get(url, headers=evaluator)).status_code == 200
    r = await client.post(f"{url}/advance", json={"status": "in_progress"}, headers=evaluator)
    assert r.status_code == 403 and r.json()["code"] == "rectification.forbidden"
    other = auth(role="community_staff", user="cs2", scopes=[f"community:{C2}"])
    assert (await client.get(url, headers=other)).status_code == 404
    assert (await client.get("/metrics/v1/rectifications", headers=other)).json()["items"] == []
    r = await client.post(f"{url}/advance", json={"status": "in_progress"}, headers=other)
    assert r.status_code == 404
    resident = auth(role="resident", user="r1")
    assert (await client.get(url, headers=resident)).status_code == 403
    assert (await client.get("/metrics/v1/rectifications/nope", headers=ops)).status_code == 404
