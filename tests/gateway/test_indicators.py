"""Exchange indicators as events for svc_metrics: departments connected (member.joined / member.revoked), calls
per resource and refused calls (exchange.call), data items shared (exchange.item). Every event the gateway's
outbox holds must be accepted by svc_metrics' event registry as it stands."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from common.outbox import event_payload
from svc_metrics.events.registry import REGISTRY, Envelope
from tests.gateway.conftest import START

ID = "110105194703210823"
FUTURE = (START + timedelta(days=30)).isoformat()


async def _events(x, type_: str | None = None):
    from gateway.base import OutboxEvent

    async with x.app.state.db.session() as s:
        q = select(OutboxEvent).order_by(OutboxEvent.id)
        if type_:
            q = q.where(OutboxEvent.type == type_)
        return (await s.execute(q)).scalars().all()


def _accepted_by_metrics(row) -> None:
    env = Envelope.model_validate(event_payload(row, "gateway"))
    spec = REGISTRY[env.type]
    spec.data.model_validate(env.data)
    if spec.subject_required:
        assert env.subject, env


async def _query(x, dept: str, member: str):
    return await x.client.post(f"/departments/{dept}/v1/queries", json={"id_number": ID}, headers=x.h(member))


async def test_indicator_events_match_what_svc_metrics_expects(exchange):
    x = exchange
    # calls: one refused (no grant), one answered after an unconditional grant
    assert (await _query(x, "renshe", "community-xf")).status_code == 403
    r = await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验"},
                            headers=x.h("community-xf"))
    assert r.json()["status"] == "approved"
    assert (await _query(x, "renshe", "community-xf")).status_code == 200
    # a conditional resource: approved by its owner, then revoked
    r = await x.client.post("/exchange/v1/grants", json={"resource": "minzheng.assistance", "purpose": "核验"},
                            headers=x.h("community-ak"))
    gid = r.json()["id"]
    r = await x.client.post(f"/exchange/v1/grants/{gid}/approve", json={"fields": ["data.dibao"], "expires_at": FUTURE},
                            headers=x.h("dept-minzheng"))
    assert r.status_code == 200, r.text
    assert (await x.client.post(f"/exchange/v1/grants/{gid}/revoke", headers=x.h("dept-minzheng"))).status_code == 200
    # a department joins the exchange, another member is revoked
    ops = x.h("ops-console", role="ops")
    r = await x.client.post("/exchange/v1/members", json={"code": "dept-weijian", "name": "区卫健委", "kind": "department",
                                                          "role": "dept_staff"}, headers=ops)
    assert r.status_code == 201, r.text
    assert (await x.client.post("/exchange/v1/members/community-ak/revoke", headers=ops)).status_code == 200
    await x.app.state.audit.flush()

    rows = await _events(x)
    assert rows
    for row in rows:
        _accepted_by_metrics(row)

    # data items: every catalogue resource entered once at start-up, not shared yet; then the grant decisions
    items = [(e.data["item"], e.data["required"], e.data["shared"]) for e in rows if e.type == "exchange.item"]
    first = {}
    for item, required, shared in items:
        first.setdefault(item, (required, shared))
    assert first["renshe.insurance"] == (True, False) and first["metrics.events"] == (False, False)
    assert [s for i, _, s in items if i == "renshe.insurance"] == [False, True]
    assert [s for i, _, s in items if i == "minzheng.assistance"] == [False, True, False]
    ev = next(e for e in rows if e.type == "exchange.item" and e.data["shared"])
    assert ev.occurred_at == START and ev.subject == ev.data["item"]

    # calls per resource and refused calls
    calls = [e for e in rows if e.type == "exchange.call"]
    assert [(e.data["resource"], e.data["member"], e.data["status"], e.data["refused"]) for e in calls] == [
        ("renshe.insurance", "community-xf", 403, True), ("renshe.insurance", "community-xf", 200, False)]
    assert all(e.data["owner"] == "dept-renshe" for e in calls)

    # departments connected
    joined = [e for e in rows if e.type == "member.joined"]
    assert [(e.subject, e.data["kind"]) for e in joined] == [("dept-weijian", "department")]
    assert [e.subject for e in rows if e.type == "member.revoked"] == ["community-ak"]


async def test_refusal_by_rate_limit_or_token_counts_as_refused(exchange):
    x = exchange
    r = await x.client.post("/departments/renshe/v1/queries", json={"id_number": ID})  # no token
    assert r.status_code == 401
    await x.app.state.audit.flush()
    (call,) = await _events(x, "exchange.call")
    _accepted_by_metrics(call)
    assert call.data["refused"] and call.data["outcome"] == "refused" and call.data["member"] == "-"


async def test_seeded_members_announce_themselves(exchange):
    from gateway.seed import ensure_service_members, seed_demo

    x = exchange
    await seed_demo(x.app.state.db)
    await ensure_service_members(x.app.state.db, {"departments": "s1", "svc_services": "s2"})
    await seed_demo(x.app.state.db)  # idempotent: no second announcement
    joined = await _events(x, "member.joined")
    for row in joined:
        _accepted_by_metrics(row)
    kinds = {e.subject: e.data["kind"] for e in joined}
    assert len(kinds) == len(joined)
    # the conftest's members exist already; the demo adds the ones it lacks
    assert kinds["dept-weijian"] == kinds["dept-canlian"] == "department"
    assert kinds["portal"] == "app" and kinds["departments"] == "emulator" and kinds["svc_services"] == "service"
    assert "dept-gongan" not in kinds
