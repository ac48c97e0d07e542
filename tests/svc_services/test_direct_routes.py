"""The one transport bypass (common.direct_routes) in front of svc_services' submission: it runs inside the
gateway-only check (ADR 0013), so a well-formed submission with a valid token, the very body the bypass would take,
is refused straight at the service and nothing is written; through the gateway's assertion it is answered by the
route's own endpoint function, as FastAPI would answer it."""
from __future__ import annotations

from sqlalchemy import func, select

from svc_services.base import IdempotencyRecord, OutboxEvent
from svc_services.requests.models import ServiceRequest
from tests.conftest import unsigned_client
from tests.svc_services.conftest import GRID1, RES1

BODY = {"item_code": "SH-WX-001", "channel": "app", "description": "厨房水管漏水", "location": {"grid": GRID1}}


async def _count(db, model) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def test_a_well_formed_submission_straight_at_the_service_is_refused_and_writes_nothing(ready, auth):
    app, db = ready.app, ready.app.state.db
    headers = {**auth(**RES1), "Idempotency-Key": "around-the-gateway-1"}
    before = {model: await _count(db, model) for model in (ServiceRequest, OutboxEvent, IdempotencyRecord)}
    async with unsigned_client(app) as c:
        r = await c.post("/services/v1/requests", json=BODY, headers=headers)
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_through_gateway"
    for model, count in before.items():  # the grids' and items' own events were there before
        assert await _count(db, model) == count, model.__name__


async def test_through_the_gateway_the_bypass_answers_as_the_route(ready, auth):
    ok = await ready.post("/services/v1/requests", json=BODY, headers=auth(**RES1))
    assert ok.status_code == 201, ok.text
    assert ok.json()["state"] == "submitted" and ok.json()["item_code"] == "SH-WX-001"
    # a field FastAPI refuses: the bypass leaves it to FastAPI, a problem naming the field
    bad = await ready.post("/services/v1/requests", json={**BODY, "channel": "fax"}, headers=auth(**RES1))
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert "channel" in bad.text
