"""Done when (issue 28): proposal → co-signs → topic → meeting → vote → resolution → tasks → 公示 → objection
answered, through the gateway with the demo district, svc_services on each database (SQLite; PostgreSQL when
configured); the events relayed to svc_metrics move the participation indicator and the resolution execution
rate; the result notice is read without a token and carries the tally hash that verifies."""
from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

from common.clock import FrozenClock, local_date
from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import HttpEventSender
from deploy.demo import person_id
from tests.conftest import gateway_auth
from tests.inprocess import start_platform

XF = "110105001001"
P2 = person_id("P2")


async def _relay(p, source: str, include: tuple[str, ...]) -> None:
    from importlib import import_module

    app, metrics = p.apps[source], p.apps["svc_metrics"]
    token = p.token("system", member=source, user=source)

    async def provider():
        return token

    send = HttpEventSender("http://metrics/metrics/v1/events", provider, auth=gateway_auth(),
                           transport=__import__("httpx").ASGITransport(app=metrics))
    relay = OutboxRelay(app.state.db, import_module(f"{source}.base").OutboxEvent, source=source, send=send,
                        clock=app.state.clock, types=TypeFilter(include=include))
    while await relay.run_once():
        pass


async def test_the_whole_path_through_the_gateway(db_url, tmp_path):
    async with AsyncExitStack() as stack:
        p = await start_platform(stack, tmp_path, urls={"svc_services": db_url})
        svc = p.apps["svc_services"]
        clock = svc.state.clock = FrozenClock(p.gateway.state.clock.now())
        p.apps["svc_metrics"].state.clock = clock

        async def call(who, method, url, want=(200, 201), headers=None, **kw):
            r = await p.client.request(method, url, headers=headers or p.headers(who), **kw)
            assert r.status_code in want, (method, url, r.status_code, r.text)
            return r.json()

        async def kpi(code, **params):
            return await call("ops1", "GET", f"/metrics/v1/kpis/{code}", params={"scope": XF, **params})

        await _relay(p, "svc_residents", ("person.",))
        # each figure is asked for the month its events fall in: the run may start on a month's last evening
        ballot_month = local_date(clock.now() + timedelta(hours=2)).strftime("%Y-%m")
        before = (await kpi("participation_rate", period=ballot_month))["value"] or 0
        await call("staff1", "PUT", f"/services/v1/deliberation/policies/{XF}", json={"cosign_threshold": 2})
        t = await call("resident1", "POST", "/services/v1/topics", json={
            "title": "幸福社区增设电动自行车充电棚", "description": "楼道充电有火灾隐患，提议在小区东侧增设充电棚。",
            "category": "safety", "scope_kind": "community", "scope_code": XF})
        tid = t["id"]
        await call("resident3", "POST", f"/services/v1/topics/{tid}/cosigns")
        p2 = p.headers("resident1", scopes=[f"person:{P2}"], user="resident2")
        assert (await call(None, "POST", f"/services/v1/topics/{tid}/cosigns", headers=p2))["stage"] == "open"
        await call("proxy1", "POST", f"/services/v1/topics/{tid}/comments", json={"text": "王阿姨赞成，希望离3号楼近些"})
        m = await call("staff1", "POST", f"/services/v1/topics/{tid}/meetings", json={
            "starts_at": (clock.now() + timedelta(hours=1)).isoformat(), "place": "幸福社区议事厅",
            "members": [{"kind": "resident_rep", "ref": person_id("P1")}, {"kind": "grid_worker", "ref": "grid1"},
                        {"kind": "property", "ref": "wy-xf", "name": "幸福物业"},
                        {"kind": "department", "ref": "minzheng"}]})
        clock.advance(hours=2)
        await call("staff1", "POST", f"/services/v1/topics/{tid}/meetings/{m['id']}/record", json={
            "attended": [person_id("P1"), "grid1", "minzheng"], "minutes": "同意提交居民表决"})
        now = clock.now()
        await call("staff1", "POST", f"/services/v1/topics/{tid}/vote", json={
            "options": ["同意", "反对"], "eligibility": "adult", "secret": True, "opens_at": now.isoformat(),
            "closes_at": (now + timedelta(days=2)).isoformat()})
        receipts = [(await call(who, "POST", f"/services/v1/topics/{tid}/ballots", headers=h,
                                json={"option": o}))["receipt"]
                    for who, h, o in (("resident1", None, "同意"), (None, p2, "同意"), ("proxy1", None, "同意"))]
        late = await p.client.post(f"/services/v1/topics/{tid}/ballots", headers=p.headers("resident3"),
                                   json={"option": "反对"})
        assert (late.status_code, late.json()["code"]) == (409, "ballot.duplicate")   # P3 voted through proxy1
        clock.advance(days=2)
        v = await call("staff1", "POST", f"/services/v1/topics/{tid}/vote/close")
        close_month = local_date(clock.now()).strftime("%Y-%m")
        assert v["result"]["counts"] == {"同意": 3, "反对": 0} and v["result"]["eligible"] == 5   # P6 is an infant
        assert v["result"]["passed"] and v["result"]["receipts"] == sorted(receipts, key=v["result"]["receipts"].index)
        assert (await call("resident1", "GET", f"/services/v1/topics/{tid}/vote/verify"))["ok"]
        due = clock.now() + timedelta(days=10)
        r = await call("staff1", "POST", f"/services/v1/topics/{tid}/resolution", json={
            "text": "在东侧空地建设充电棚，民政协调资金。", "tasks": [
                {"title": "选址与施工", "owner_kind": "community", "owner_ref": XF, "due_at": due.isoformat()},
                {"title": "资金协调", "owner_kind": "department", "owner_ref": "minzheng", "due_at": due.isoformat()}]})
        clock.advance(days=3)
        for task in r["tasks"]:
            who = "dept_mz" if task["owner_kind"] == "department" else "staff1"
            await call(who, "POST", f"/services/v1/topics/{tid}/resolution/tasks/{task['id']}/reports",
                       json={"text": "已完成", "percent": 100})
        assert (await call("resident1", "GET", f"/services/v1/topics/{tid}"))["stage"] == "executed"
        now = clock.now()
        n = await call("staff1", "POST", "/services/v1/notices", json={
            "kind": "deliberation_result", "title": "充电棚议题表决结果公示", "body": "表决通过，已落实。",
            "scope_code": XF, "topic_id": tid, "publish_from": now.isoformat(),
            "publish_until": (now + timedelta(days=7)).isoformat(),
            "objection_until": (now + timedelta(days=5)).isoformat()})
        public = await p.client.get(f"/services/v1/public/notices/{n['id']}")   # no token: a kiosk's page
        assert public.status_code == 200, public.text
        assert public.json()["extra"]["tally_hash"] == v["tally_hash"]
        assert (await p.client.get("/services/v1/notices")).status_code == 401   # the rest still needs one
        o = await call("resident1", "POST", f"/services/v1/notices/{n['id']}/objections", json={"text": "位置离幼儿园太近"})
        a = await call("staff1", "POST", f"/services/v1/notices/{n['id']}/objections/{o['id']}/answer",
                       json={"answer": "已与幼儿园协商，增设隔离带。"})
        assert a["answer"]
        await _relay(p, "svc_services", ("deliberation.", "participation.", "public_notice."))
        after = (await kpi("participation_rate", period=ballot_month))["value"]
        assert after > before
        period = local_date(due).strftime("%Y-%m")
        assert (await kpi("resolution_execution_rate", period=period))["value"] == 100.0
        assert (await kpi("vote_turnout", period=close_month))["value"] == 60.0
