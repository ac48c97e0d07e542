"""Ingest: whole-batch validation, idempotency by event_id, roles, order independence."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from svc_metrics.events.models import StoredEvent
from tests.svc_metrics.conftest import T0, ev, request_flow


async def count_events(client) -> int:
    async with client.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(StoredEvent))).scalar_one()


async def test_batch_is_stored_once_and_resend_changes_nothing(client, post, kpi):
    batch = request_flow("r1", T0, steps={"accepted": timedelta(hours=2), "resolved": timedelta(hours=5)})
    assert await post(batch) == {"received": 3, "accepted": 3, "duplicates": 0}
    first = await kpi("response_time")
    assert await post(batch) == {"received": 3, "accepted": 0, "duplicates": 3}
    assert await count_events(client) == 3
    assert await kpi("response_time") == first


async def test_unknown_type_missing_field_and_naive_time_refuse_the_whole_batch(client, post):
    good = ev("request.submitted", T0, "r1", category="life_service", channel="app")
    unknown = ev("request.teleported", T0, "r1")
    missing = ev("request.submitted", T0, "r2", channel="app")          # no category
    naive = ev("need.created", T0, "n1", category="elderly_care")
    naive["occurred_at"] = "2026-03-02T09:00:00"
    body = await post([good, unknown, missing, naive], expect=422)
    fields = {e["field"]: e for e in body["errors"]}
    assert "events[1].type" in fields and "request.teleported" in fields["events[1].type"]["message"]
    assert "events[2].data.category" in fields
    assert "events[3].occurred_at" in fields
    assert fields["events[3].occurred_at"]["code"] == "timezone_aware"
    assert await count_events(client) == 0  # the good event was refused with the rest


async def test_envelope_refuses_unknown_fields_and_bad_places(post):
    e = ev("request.submitted", T0, "r1", category="x", channel="app")
    e["colour"] = "red"
    bad_grid = ev("request.submitted", T0, "r2", category="x", channel="app")
    bad_grid["grid"] = "110105001002001"     # not inside community 110105001001
    bad_grid["community"] = "110105001001"
    body = await post([e, bad_grid], expect=422)
    assert {x["field"] for x in body["errors"]} == {"events[0].colour", "events[1].grid"}


async def test_rated_needs_a_rating_in_range(post):
    body = await post([ev("request.rated", T0, "r1", rating=7)], expect=422)
    assert body["errors"][0]["field"] == "events[0].data.rating"


async def test_batch_over_the_limit_is_refused(client, post):
    client.app.state.settings.max_events_per_batch = 3
    events = [ev("need.created", T0, f"n{i}", category="x") for i in range(4)]
    body = await post(events, expect=413)
    assert body["code"] == "batch_too_large"


async def test_only_system_and_ops_may_post(client, auth):
    e = ev("need.created", T0, "n1", category="x")
    for role in ("resident", "community_staff", "evaluator"):
        r = await client.post("/metrics/v1/events", json={"events": [e]}, headers=auth(role=role))
        assert r.status_code == 403
    r = await client.post("/metrics/v1/events", json={"events": [e]})
    assert r.status_code == 401
    r = await client.post("/metrics/v1/events", json={"events": [e]}, headers=auth(role="ops"))
    assert r.status_code == 200


async def test_out_of_order_and_late_events_give_the_same_numbers(client, post, kpi):
    events = []
    for i in range(6):
        events += request_flow(f"r{i}", T0 + timedelta(days=i), due=timedelta(hours=48), rating=5 - i % 3,
                               steps={"accepted": timedelta(hours=i + 1), "resolved": timedelta(hours=10 * i + 5),
                                      "rated": timedelta(hours=10 * i + 6), "closed": timedelta(hours=10 * i + 7)})
    random.Random(7).shuffle(events)
    for i in range(0, len(events), 5):  # small batches, shuffled: closures arrive before submissions
        await post(events[i:i + 5])
    got = {c: (await kpi(c))["value"] for c in ("response_time", "on_time_rate", "satisfaction_rate")}
    assert got == {"response_time": 3.5, "on_time_rate": round(5 / 6 * 100, 2), "satisfaction_rate": round(4 / 6 * 100, 2)}


async def test_malformed_bodies_get_problems_naming_the_field(client, auth):
    headers = {**auth(role="system", user="svc_services", member="svc_services"), "Content-Type": "application/json"}
    r = await client.post("/metrics/v1/events", content=b'{"events": [', headers=headers)
    assert r.status_code in (400, 422) and r.headers["content-type"].startswith("application/problem+json")
    assert "JSON" in r.json()["title"] or "JSON" in r.text
    for body, field in ((b'{"events": {}}', "events"), (b'{"rows": []}', "events"), (b'[]', None)):
        r = await client.post("/metrics/v1/events", content=body, headers=headers)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if field:
            assert field in {e["field"] for e in r.json()["errors"]}, r.text
    r = await client.get("/openapi.json")
    body = r.json()["paths"]["/metrics/v1/events"]["post"]["requestBody"]
    assert "events" in body["content"]["application/json"]["schema"]["properties"]


async def test_the_declared_item_schema_is_what_the_server_enforces(client, post):
    """POST /metrics/v1/events declares each event (issue 31): the envelope, `type` one of the registry's, that
    type's `data` and, where the type needs one, a `subject`; what it refuses, the server refuses too."""
    import jsonschema

    doc = (await client.get("/openapi.json")).json()
    body = doc["paths"]["/metrics/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    item = body["properties"]["events"]["items"]
    good = ev("request.rated", T0, "r1", rating=4)
    jsonschema.validate(good, item)
    refused = []
    for field, value in (("occurred_at", 1767225600), ("rating", "4"), ("rating", True), ("subject", None),
                         ("community", "١١٠١٠٥٠٠١٠٠١")):
        e = ev("request.rated", T0, "r1", rating=4, grid=None)
        (e["data"] if field == "rating" else e)[field] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(e, item)
        refused.append(e)
    errors = (await post(refused, expect=422))["errors"]
    assert [x["field"] for x in errors] == ["events[0].occurred_at", "events[1].data.rating", "events[2].data.rating",
                                            "events[3].subject", "events[4].community"], errors
    assert await count_events(client) == 0
