"""The `emergency.` feed writes a snapshot when it changes what svc_residents' call-out does: the submission (the
call-out starts) and the request taken up (it stops); the SLA's escalation of an emergency nobody answered keeps
it calling and writes none, so such rows never queue in the emergency lane ahead of new alarms (ADR 0021)."""
from __future__ import annotations

from sqlalchemy import select

from svc_services.base import OutboxEvent
from svc_services.sla.scan import run_sla_scan
from tests.svc_services.conftest import STAFF, move, submit


async def _snapshots(db, rid: str) -> list[str]:
    async with db.session() as s:
        rows = (await s.execute(select(OutboxEvent.data).where(OutboxEvent.subject == rid,
                                                               OutboxEvent.type == "emergency.changed")
                                .order_by(OutboxEvent.id))).scalars()
        return [d["state"] for d in rows]


async def test_an_escalation_within_the_calling_states_writes_no_snapshot(ready, auth, clock):
    client = ready
    db, settings = client.app.state.db, client.app.state.settings
    rid = (await submit(client, auth, item_code="YJ-HJ-001", description="一键呼叫")).json()["id"]
    assert await _snapshots(db, rid) == ["submitted"]
    clock.advance(seconds=settings.emergency_ack_seconds + 1)
    assert (await run_sla_scan(db, clock, settings)).escalated == [rid]
    body = (await client.get(f"/services/v1/requests/{rid}", headers=auth(**STAFF))).json()
    assert body["state"] == "escalated"
    assert await _snapshots(db, rid) == ["submitted"]  # still calling: nothing new for the call-out
    r = await move(client, auth, rid, "accept", STAFF)
    assert r.status_code == 200, r.text
    assert await _snapshots(db, rid) == ["submitted", "accepted"]  # taken up: the call-out stops
