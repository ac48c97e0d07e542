"""Idempotency and concurrency on the real app (issue #8), on SQLite and PostgreSQL: concurrent retries of one
submission create one request; concurrent conflicting transitions leave one winner and a consistent timeline."""
from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select

from svc_services.base import IdempotencyRecord, OutboxEvent
from svc_services.requests.lifecycle import replay
from svc_services.requests.models import ServiceRequest, TimelineEntry
from tests.svc_services.conftest import GRID1, OPS, RES1, STAFF, STREET, submit

BODY = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}


async def _count(db, stmt) -> int:
    async with db.session() as s:
        return (await s.execute(stmt)).scalar_one()


async def test_100_concurrent_retries_create_one_request(ready, auth):
    client, db = ready, ready.app.state.db
    headers = {**auth(**RES1), "Idempotency-Key": "kiosk-7f3a-0001"}
    resps = await asyncio.gather(*(client.post("/services/v1/requests", json=BODY, headers=headers)
                                   for _ in range(100)))
    assert {r.status_code for r in resps} == {201}, [r.text for r in resps if r.status_code != 201][:3]
    bodies = [r.json() for r in resps]
    assert all(b == bodies[0] for b in bodies)
    assert Counter(r.headers["idempotency-replayed"] for r in resps)["false"] == 1
    rid = bodies[0]["id"]
    R = ServiceRequest
    assert await _count(db, select(func.count()).select_from(R).where(R.item_code == "SH-WX-001")) == 1
    assert await _count(db, select(func.count()).select_from(TimelineEntry).where(TimelineEntry.request_id == rid)) == 1
    assert await _count(db, select(func.count()).select_from(OutboxEvent)
                        .where(OutboxEvent.type == "request.submitted")) == 1
    assert await _count(db, select(func.count()).select_from(IdempotencyRecord)) == 1
    # the same key with a different body is refused, not replayed
    r = await client.post("/services/v1/requests", json={**BODY, "description": "别的事"}, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"


def _contender(i: int, version: int) -> tuple[dict, dict, dict]:
    """(actor, json body, headers) of one of many conflicting moves on one request, all at `version`."""
    action, who, note = [("accept", STAFF, None), ("reject", STAFF, "不属于受理范围"), ("cancel", RES1, None),
                         ("escalate", STREET, "需街道协调"), ("accept", STREET, None)][i % 5]
    body = {"action": action}
    if note:
        body["note"] = note
    headers = {}
    if i % 2:
        headers["If-Match"] = f'"{version}"'
    else:
        body["version"] = version
    return who, body, headers


async def test_50_concurrent_conflicting_transitions_one_winner(ready, auth):
    client, db = ready, ready.app.state.db
    r = await submit(client, auth, RES1)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    version = 1
    for _round in range(2):  # on the submitted request, then again on whatever state the winner left
        state = (await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()["state"]
        if state in ("rejected", "cancelled"):
            break
        calls = []
        for i in range(50):
            who, body, extra = _contender(i, version)
            calls.append(client.post(f"/services/v1/requests/{rid}/transitions", json=body,
                                     headers={**auth(**who), **extra}))
        resps = await asyncio.gather(*calls)
        codes = Counter(r.status_code for r in resps)
        winners = [r for r in resps if r.status_code == 200]
        assert len(winners) == 1, codes
        assert set(codes) <= {200, 409, 412}, [r.text for r in resps if r.status_code not in (200, 409, 412)][:3]
        for r in resps:
            if r.status_code == 412:
                assert r.json()["code"] == "precondition_failed"
            elif r.status_code == 409:
                assert r.json()["code"] in ("version_conflict", "transition.not_allowed")
        version += 1
        assert winners[0].json()["version"] == version

    body = (await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()
    tl = body["timeline"]
    assert body["version"] == version == len(tl)
    assert [t["seq"] for t in tl] == list(range(1, len(tl) + 1))
    assert replay([(t["action"], t["from_state"], t["to_state"]) for t in tl]) == body["state"]
    # one outbox event per timeline entry, no more
    assert await _count(db, select(func.count()).select_from(OutboxEvent).where(OutboxEvent.subject == rid)) == len(tl)


async def test_concurrent_retries_of_one_transition_apply_once(ready, auth):
    client, db = ready, ready.app.state.db
    rid = (await submit(client, auth, RES1)).json()["id"]
    headers = {**auth(**STAFF), "Idempotency-Key": "accept-once"}
    resps = await asyncio.gather(*(client.post(f"/services/v1/requests/{rid}/transitions",
                                               json={"action": "accept", "version": 1}, headers=headers)
                                   for _ in range(30)))
    assert {r.status_code for r in resps} == {200}
    assert all(r.json() == resps[0].json() for r in resps)
    assert await _count(db, select(func.count()).select_from(TimelineEntry)
                        .where(TimelineEntry.request_id == rid)) == 2
