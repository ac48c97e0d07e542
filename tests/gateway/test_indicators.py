"""Exchange indicators as events for svc_metrics: departments connected (member.joined / member.revoked), calls
per resource and refused calls (exchange.calls), data items shared (exchange.item). Every event the gateway's
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

    # calls per resource and refused calls: counted per resource, member, owner, outcome and minute
    calls = [e for e in rows if e.type == "exchange.calls"]
    assert sorted(((e.data["resource"], e.data["member"], e.data["statuses"], e.data["refused"], e.data["count"])
                   for e in calls), key=lambda c: c[3]) == [("renshe.insurance", "community-xf", {"200": 1}, False, 1),
                                      ("renshe.insurance", "community-xf", {"403": 1}, True, 1)]
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
    (call,) = await _events(x, "exchange.calls")
    _accepted_by_metrics(call)
    assert call.data["refused"] and call.data["outcome"] == "refused" and call.data["member"] == "-"
    assert call.data["count"] == 1 and call.data["statuses"] == {"401": 1}


def test_calls_of_a_batch_are_counted_per_resource_member_outcome_and_minute():
    """`call_events`: one event per resource, calling member, owner, outcome and minute, with the count, the
    statuses and the first and last of its log rows; every call counted once."""
    from gateway.exchange.audit import Exchange, call_events
    from common.ids import new_id

    def call(second: float, status: int, member: str = "community-xf", resource: str | None = "renshe.insurance"):
        return Exchange(id=new_id(), at=START + timedelta(seconds=second), member=member, user="u1",
                        resource=resource, owner="dept-renshe" if resource else None, purpose="核验", method="POST",
                        path="/departments/renshe/v1/queries", status=status, latency_ms=1.0, request_id="r",
                        request_hash="a" * 64, response_hash="b" * 64)

    batch = [call(1, 200), call(2, 200), call(3, 404), call(4, 403), call(5, 200, member="community-ak"),
             call(61, 200), call(62, 429), call(63, 200, resource=None)]
    events = call_events(batch, START)
    for e in events:
        Envelope.model_validate({**{k: v for k, v in e.items() if k in Envelope.model_fields}, "source": "gateway"})
        REGISTRY[e["type"]].data.model_validate(e["data"])
    got = sorted((e["occurred_at"] - START).seconds for e in events)
    assert got == [1, 3, 4, 5, 61, 62, 63]
    by_start = {(e["occurred_at"] - START).seconds: e for e in events}
    first = by_start[1]["data"]
    assert first["count"] == 2 and first["statuses"] == {"200": 2} and first["outcome"] == "ok"
    assert (first["first_log_id"], first["last_log_id"]) == (batch[0].id, batch[1].id)
    assert by_start[3]["data"]["outcome"] == "error" and not by_start[3]["data"]["refused"]
    assert by_start[4]["data"]["refused"] and by_start[62]["data"]["statuses"] == {"429": 1}
    assert by_start[5]["data"]["member"] == "community-ak" and by_start[61]["data"]["count"] == 1
    assert by_start[63]["subject"] == "/departments/renshe/v1/queries" and by_start[63]["data"]["resource"] is None
    assert sum(e["data"]["count"] for e in events) == len(batch)


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


async def test_the_residents_app_member_exists_without_the_demo(exchange):
    """Accounts, phone sign-in and kiosk sessions belong to the residents' app (member portal): `onenet bootstrap
    --no-demo` (ensure_service_members) makes it, once, with no secret; staff can then be given accounts."""
    from sqlalchemy import delete

    from gateway.members.models import Member
    from gateway.seed import ensure_service_members

    x = exchange
    async with x.app.state.db.session() as s, s.begin():
        await s.execute(delete(Member).where(Member.code == "portal"))
    await ensure_service_members(x.app.state.db, {"svc_services": "s2"})
    await ensure_service_members(x.app.state.db, {"svc_services": "s2"})  # a second bootstrap adds nothing
    async with x.app.state.db.session() as s:
        portal = await s.get(Member, "portal")
    assert (portal.kind, portal.role, portal.status, portal.secret_hash) == ("app", "system", "active", None)
    assert [e.subject for e in await _events(x, "member.joined")].count("portal") == 1
