"""The exchange: catalogue, grants (申请-审批) with deadlines, grant checks and masking on forwarded calls,
and the hash-chained message log."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from urllib.parse import quote

import pytest
from sqlalchemy import func, select, text

from gateway.exchange.policy import ResourceView, apply_actions, field_actions
from gateway.exchange.workdays import add_working_days
from tests.gateway.conftest import START

ID = "110105194703210823"
FUTURE = (START + timedelta(days=30)).isoformat()


async def _query(x, dept: str, member: str, **headers):
    return await x.client.post(f"/departments/{dept}/v1/queries", json={"id_number": ID},
                               headers=x.h(member, **headers))


async def _apply(x, member: str, resource: str, **body):
    return await x.client.post("/exchange/v1/grants", json={"resource": resource, "purpose": "核验救助身份", **body},
                               headers=x.h(member))


# ---- catalogue -------------------------------------------------------------------------------------------------

async def test_catalogue_is_seeded_and_pages_with_a_cursor(exchange):
    x = exchange
    seen, cursor = [], None
    while True:
        r = await x.client.get("/exchange/v1/catalogue", params={"limit": 4, **({"cursor": cursor} if cursor else {})},
                               headers=x.h("community-xf"))
        assert r.status_code == 200, r.text
        seen += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    codes = [r["code"] for r in seen]
    assert codes == sorted(codes) and len(codes) == len(set(codes))
    assert {"gongan.hukou", "minzheng.assistance", "weijian.health-check", "renshe.insurance",
            "canlian.certificate", "residents.persons", "services.catalogue"} <= set(codes)
    mz = next(r for r in seen if r["code"] == "minzheng.assistance")
    assert mz["owner"] == "dept-minzheng" and mz["sharing_class"] == "conditional" and mz["sharing_label"] == "有条件共享"
    dibao = next(f for f in mz["fields"] if f["path"] == "data.dibao")
    assert dibao["grade"] == "core" and dibao["sensitive"] and dibao["personal"]
    r = await x.client.get("/exchange/v1/catalogue", params={"sharing_class": "not_shared"}, headers=x.h("dept-renshe"))
    assert [i["code"] for i in r.json()["items"]] == ["metrics.events"]
    assert (await x.client.get("/exchange/v1/catalogue")).status_code == 401


# ---- applications: bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ({"resource": "minzheng.assistance", "purpose": ""}, "purpose"),
    ({"resource": "minzheng.assistance", "purpose": "   "}, "purpose"),
    ({"resource": "minzheng.assistance"}, "purpose"),
    ({"resource": "no.such.resource", "purpose": "x"}, "resource"),
    ({"resource": "metrics.events", "purpose": "x"}, "resource"),
    ({"resource": "minzheng.assistance", "purpose": "x", "expires_at": "2020-01-01T00:00:00+08:00"}, "expires_at"),
    ({"resource": "minzheng.assistance", "purpose": "x", "fields": ["data.salary"]}, "fields"),
    ({"resource": "minzheng.assistance", "purpose": "x", "colour": "red"}, "colour"),
])
async def test_bad_applications_are_422_naming_the_field(exchange, body, field):
    r = await exchange.client.post("/exchange/v1/grants", json=body, headers=exchange.h("community-xf"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field


# ---- unconditional / conditional, approval, refusal, revocation, expiry ----------------------------------------

async def test_unconditional_resource_is_granted_on_application(exchange):
    x = exchange
    assert (await _query(x, "renshe", "community-xf")).status_code == 403
    r = await _apply(x, "community-xf", "renshe.insurance")
    assert r.status_code == 201 and r.json()["status"] == "approved" and r.json()["live"], r.text
    r = await _query(x, "renshe", "community-xf")
    assert r.status_code == 200, r.text
    assert r.json()["id_number"] == ID and set(r.json()["data"]) == {"insured", "pension"}
    assert r.headers["x-onenet-service"] == "departments"


async def test_unknown_or_unrelated_objects_are_not_found(exchange):
    """A grant read by a member neither its owner nor its consumer answers exactly as an unknown grant."""
    x = exchange
    r = await x.client.get("/exchange/v1/catalogue/no.such", headers=x.h("community-xf"))
    assert (r.status_code, r.json()["code"]) == (404, "resource.not_found")
    g = (await _apply(x, "community-xf", "renshe.insurance")).json()
    assert (await x.client.get(f"/exchange/v1/grants/{g['id']}", headers=x.h("dept-renshe"))).status_code == 200
    for r in (await x.client.get(f"/exchange/v1/grants/{g['id']}", headers=x.h("dept-gongan")),
              await x.client.get("/exchange/v1/grants/no-such", headers=x.h("community-xf")),
              await x.client.post("/exchange/v1/grants/no-such/revoke", headers=x.h("dept-renshe"))):
        assert (r.status_code, r.json()["code"]) == (404, "grant.not_found"), r.text


async def test_conditional_needs_approval_then_is_masked_to_the_scope(exchange):
    x = exchange
    r = await _apply(x, "community-xf", "minzheng.assistance", fields=["data.dibao", "data.tekun"])
    g = r.json()
    assert r.status_code == 201 and g["status"] == "pending" and not g["live"]
    r = await _query(x, "minzheng", "community-xf")
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant"
    # only the owner decides
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/approve", headers=x.h("community-xf"),
                            json={"fields": ["data.dibao"], "expires_at": FUTURE})
    assert r.status_code == 403
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/approve", headers=x.h("dept-minzheng"),
                            json={"fields": ["data.dibao"], "expires_at": FUTURE})
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["fields"] == ["data.dibao"]
    r = await _query(x, "minzheng", "community-xf")
    assert r.status_code == 200, r.text
    body = r.json()
    # granted: dibao; sensitive outside the grant (tekun, low_income, the ID number) removed; general kept
    assert set(body["data"]) == {"dibao"} and "id_number" not in body and body["department_name"] == "民政局"
    # a second decision is a conflict
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/refuse", headers=x.h("dept-minzheng"),
                            json={"reason": "x"})
    assert r.status_code == 409
    # another member's grant does not help
    assert (await _query(x, "minzheng", "community-ak")).status_code == 403
    # the owner itself needs no grant
    r = await _query(x, "minzheng", "dept-minzheng")
    assert r.status_code == 200 and set(r.json()["data"]) == {"dibao", "tekun", "low_income"}


async def test_personal_fields_outside_the_grant_are_masked(exchange):
    x = exchange
    g = (await _apply(x, "community-xf", "gongan.hukou")).json()
    await x.client.post(f"/exchange/v1/grants/{g['id']}/approve", headers=x.h("dept-gongan"),
                        json={"fields": ["data.residency_type"], "expires_at": FUTURE})
    r = await _query(x, "gongan", "community-xf")
    body = r.json()
    assert r.status_code == 200, r.text
    assert "id_number" not in body                                  # sensitive personal: removed
    assert body["data"]["hukou_division"] == "1*****" or "*" in body["data"]["hukou_division"]  # personal: masked
    assert body["data"]["registered"] is None                       # personal, not a string: nulled
    assert body["data"]["residency_type"] in ("户籍", "常住")        # inside the grant: clear
    assert body["department"] == "gongan"                           # general, not personal: kept


def test_each_field_class_unit():
    res = ResourceView(code="r", owner="o", name="n", sharing_class="conditional", service="s", path_prefix="/s",
                       fields=(
                           {"path": "id_number", "grade": "core", "personal": True, "sensitive": True,
                            "mask": "id_number"},
                           {"path": "phone", "grade": "important", "personal": True, "sensitive": False,
                            "mask": "phone"},
                           {"path": "name", "grade": "general", "personal": True, "sensitive": False, "mask": "name"},
                           {"path": "budget", "grade": "core", "personal": False, "sensitive": False},
                           {"path": "rank", "grade": "important", "personal": False, "sensitive": False},
                           {"path": "label", "grade": "general", "personal": False, "sensitive": False},
                           {"path": "meta.tags", "grade": "core", "personal": True, "sensitive": True}))
    row = {"id_number": ID, "phone": "13800010007", "name": "赵敏", "budget": 5, "rank": 2, "label": "x",
           "meta": {"tags": ["dibao"], "other": 1}, "undeclared": "kept"}
    page = {"items": [dict(row, meta=dict(row["meta"])), dict(row, meta=dict(row["meta"]))], "next_cursor": None}
    out = apply_actions(page, field_actions(res, frozenset({"name"})))
    for item in out["items"]:
        assert item == {"phone": "138****0007", "name": "赵敏", "label": "x", "meta": {"other": 1},
                        "undeclared": "kept"}
    out = apply_actions([dict(row, meta=dict(row["meta"]))], field_actions(res, frozenset({"id_number", "budget"})))
    assert out[0]["id_number"] == ID and out[0]["budget"] == 5 and out[0]["name"] == "赵*" and "rank" not in out[0]
    assert field_actions(res, None) == ()  # a full-scope grant touches nothing (no JSON parse on the hot path)


async def test_refusal_needs_a_reason(exchange):
    x = exchange
    g = (await _apply(x, "community-xf", "minzheng.assistance")).json()
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/refuse", headers=x.h("dept-minzheng"), json={"reason": " "})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/refuse", headers=x.h("dept-minzheng"),
                            json={"reason": "用途与资源无关"})
    assert r.status_code == 200 and r.json()["status"] == "refused" and r.json()["reason"] == "用途与资源无关"
    assert (await _query(x, "minzheng", "community-xf")).status_code == 403
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/approve", headers=x.h("dept-minzheng"),
                            json={"fields": [], "expires_at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 409


async def test_approval_expiry_in_the_past_is_422(exchange):
    x = exchange
    g = (await _apply(x, "community-xf", "minzheng.assistance")).json()
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/approve", headers=x.h("dept-minzheng"),
                            json={"fields": ["data.dibao"], "expires_at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "expires_at"


async def test_revocation_is_immediate_and_expiry_ends_a_grant(exchange):
    x = exchange
    g = (await _apply(x, "community-xf", "renshe.insurance")).json()
    assert (await _query(x, "renshe", "community-xf")).status_code == 200
    r = await x.client.post(f"/exchange/v1/grants/{g['id']}/revoke", headers=x.h("dept-renshe"),
                            json={"reason": "停止合作"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = await _query(x, "renshe", "community-xf")
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant"
    # a periodic reload from the database keeps it revoked
    from gateway.exchange.service import load_policy
    await load_policy(x.app.state.db, x.app.state.exchange_policy, x.clock.now())
    assert (await _query(x, "renshe", "community-xf")).status_code == 403
    # expiry: live until the instant it expires
    await _apply(x, "community-xf", "renshe.insurance", expires_at=(START + timedelta(hours=1)).isoformat())
    assert (await _query(x, "renshe", "community-xf")).status_code == 200
    x.clock.advance(hours=1)
    assert (await _query(x, "renshe", "community-xf")).status_code == 403


async def test_uncatalogued_department_route_is_refused(exchange):
    r = await exchange.client.post("/departments/jiaoyu/v1/queries", json={"id_number": ID},
                                   headers=exchange.h("ops-console"))
    assert r.status_code == 403 and r.json()["code"] == "exchange.not_catalogued"


# ---- working-day deadlines -------------------------------------------------------------------------------------

def test_working_days_skip_weekends_and_holidays():
    sh = timezone(timedelta(hours=8))
    # Friday → check due end of Tuesday, reply due end of the next Friday
    fri = datetime(2026, 11, 20, 10, 0, tzinfo=sh)
    assert add_working_days(fri, 2) == datetime(2026, 11, 25, 0, 0, tzinfo=sh)
    assert add_working_days(fri, 5) == datetime(2026, 11, 28, 0, 0, tzinfo=sh)
    # National Day 2025: 1–8 October off, so two working days after 30 September end on 10 October
    assert add_working_days(datetime(2025, 9, 30, 9, 0, tzinfo=sh), 2) == datetime(2025, 10, 11, 0, 0, tzinfo=sh)


async def test_applications_show_overdue_after_the_deadlines(exchange):
    x = exchange
    g = (await _apply(x, "community-xf", "minzheng.assistance")).json()
    assert g["check_due_at"].startswith("2026-11-24T16:00:00") and g["reply_due_at"].startswith("2026-11-27T16:00")
    assert not g["overdue"]
    x.clock.advance(days=5)  # Wednesday 25th: not yet checked → check overdue
    r = await x.client.get(f"/exchange/v1/grants/{g['id']}", headers=x.h("dept-minzheng"))
    assert r.json()["check_overdue"] and not r.json()["reply_overdue"] and r.json()["overdue"]
    await x.client.post(f"/exchange/v1/grants/{g['id']}/check", headers=x.h("dept-minzheng"))
    x.clock.advance(days=3)  # Saturday 28th: no answer yet → reply overdue
    r = await x.client.get("/exchange/v1/grants", params={"side": "owner", "overdue": "true"},
                           headers=x.h("dept-minzheng"))
    item = r.json()["items"][0]
    assert item["id"] == g["id"] and item["reply_overdue"] and item["check_overdue"]
    r = await x.client.get("/exchange/v1/grants", params={"side": "owner"}, headers=x.h("dept-renshe"))
    assert r.json()["items"] == []


# ---- message log -----------------------------------------------------------------------------------------------

async def test_every_exchange_is_logged_in_a_verifiable_chain(exchange):
    from gateway.base import OutboxEvent
    from gateway.exchange.audit import verify_chain
    from gateway.exchange.models import MessageLog

    x = exchange
    await _query(x, "renshe", "community-xf", **{"X-OneNet-Purpose": quote("养老服务资格核验")})  # refused: no grant
    await _apply(x, "community-xf", "renshe.insurance")
    ok = await _query(x, "renshe", "community-xf", **{"X-OneNet-Purpose": quote("养老服务资格核验")})
    await x.client.get("/departments/minzheng/v1/queries")  # no token: refused, logged too
    await x.app.state.audit.flush()
    db = x.app.state.db
    async with db.session() as s:
        rows = (await s.execute(select(MessageLog).order_by(MessageLog.seq))).scalars().all()
    assert [r.status for r in rows] == [403, 200, 401]
    first, second, third = rows
    assert second.member == "community-xf" and second.resource == "renshe.insurance" and second.owner == "dept-renshe"
    assert second.purpose == "养老服务资格核验" and second.latency_ms >= 0
    import hashlib
    assert second.response_hash == hashlib.sha256(ok.content).hexdigest()
    assert second.request_hash == hashlib.sha256(('{"id_number":"%s"}' % ID).encode()).hexdigest()
    assert second.prev_hash == first.hash and third.prev_hash == second.hash and third.member == "-"
    result = await verify_chain(db, MessageLog)
    assert result.ok and result.count == 3
    # indicators: the logged calls counted by resource, member, owner and outcome (two members were refused)
    async with db.session() as s:
        events = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == "exchange.calls"))).scalars().all()
    assert sorted((e.data["outcome"], e.data["count"]) for e in events) == [("ok", 1), ("refused", 1), ("refused", 1)]

    # the owner sees the log of its own resource; another member sees nothing of it
    r = await x.client.get("/exchange/v1/log", headers=x.h("dept-renshe"))
    assert [i["status"] for i in r.json()["items"]] == [200, 403]
    r = await x.client.get("/exchange/v1/log", headers=x.h("dept-minzheng"))
    assert [i["status"] for i in r.json()["items"]] == [401]
    r = await x.client.get("/exchange/v1/log", headers=x.h("community-xf"))
    assert r.json()["items"] == []

    # tamper with the middle row: verify names it
    async with db.session() as s, s.begin():
        await s.execute(text("UPDATE exchange_message_log SET status = 500 WHERE seq = :s"), {"s": second.seq})
    result = await verify_chain(db, MessageLog)
    assert not result.ok and result.first_bad_seq == second.seq and result.first_bad_id == second.id
    assert "content" in result.reason
    # put it back, then delete it: the next row no longer links
    async with db.session() as s, s.begin():
        await s.execute(text("UPDATE exchange_message_log SET status = 200 WHERE seq = :s"), {"s": second.seq})
    assert (await verify_chain(db, MessageLog)).ok
    async with db.session() as s, s.begin():
        await s.execute(text("DELETE FROM exchange_message_log WHERE seq = :s"), {"s": second.seq})
    result = await verify_chain(db, MessageLog)
    assert not result.ok and result.first_bad_seq == third.seq and "prev_hash" in result.reason


async def test_audit_verify_cli(exchange):
    import asyncio

    import typer
    from typer.testing import CliRunner

    from gateway.cli import register

    x = exchange
    await _apply(x, "community-xf", "renshe.insurance")
    await _query(x, "renshe", "community-xf")
    await _query(x, "renshe", "community-ak")
    await x.app.state.audit.flush()
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    run = lambda: CliRunner().invoke(app, ["audit", "verify", "--database-url", x.db_url])  # noqa: E731
    r = await asyncio.to_thread(run)
    assert r.exit_code == 0 and "2 条记录" in r.output, r.output
    async with x.app.state.db.session() as s, s.begin():
        await s.execute(text("UPDATE exchange_message_log SET member = 'someone-else' WHERE seq = "
                             "(SELECT MAX(seq) FROM exchange_message_log)"))
    r = await asyncio.to_thread(run)
    assert r.exit_code == 1 and "seq=2" in r.output


@pytest.mark.parametrize("exchange", [{"audit_soft_backlog": 2, "audit_max_backlog": 4,
                                       "audit_admit_wait_seconds": 30}], indirect=True)
async def test_a_log_writer_behind_holds_calls_back_and_a_failing_one_refuses_them(exchange):
    """Backpressure: past the soft backlog a call waits for the writer's next commit instead of running ahead
    of its record; with the writer failing and the backlog full it is refused (503), never forwarded unlogged."""
    import asyncio

    from gateway.exchange.models import MessageLog

    x = exchange
    audit = x.app.state.audit
    await _apply(x, "community-xf", "renshe.insurance")
    await audit.flush()
    write, release = audit._write, asyncio.Event()

    async def held(batch):
        await release.wait()
        await write(batch)

    audit._write = held
    for _ in range(2):  # the writer takes these two, and waits
        assert (await _query(x, "renshe", "community-xf")).status_code == 200
    third = asyncio.create_task(_query(x, "renshe", "community-xf"))
    await asyncio.sleep(0.5)
    assert not third.done() and audit.waited == 1  # held back: two records queued, none committed
    release.set()
    r = await asyncio.wait_for(third, 10)
    assert r.status_code == 200, r.text
    await audit.flush()
    async with x.app.state.db.session() as s:
        assert (await s.scalar(select(func.count()).select_from(MessageLog))) == 3  # the three calls

    async def broken(batch):
        raise OSError("database unreachable")

    audit._write = broken
    statuses = []
    for _ in range(6):
        statuses.append((await asyncio.wait_for(_query(x, "renshe", "community-xf"), 10)).status_code)
        await asyncio.sleep(0.3)  # the writer tries (and fails) in between
    assert audit.failing
    # two answered freely, two more held in memory while the writer failed, then the full backlog refuses
    assert statuses[:4] == [200, 200, 200, 200] and set(statuses[4:]) == {503}, statuses
    r = await _query(x, "renshe", "community-xf")
    assert r.status_code == 503 and r.json()["code"] == "exchange.audit_backlog"
    audit._write = write
    assert await audit.flush() == 7 and not audit.failing  # the four answered, and the three refusals
    assert (await _query(x, "renshe", "community-xf")).status_code == 200
