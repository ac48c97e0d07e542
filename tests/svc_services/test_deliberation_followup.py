"""大事社区议 and 落实监督 (issue 28): a request escalated as a topic (linked once, only while open, only by staff
over its place), resolutions only for passed topics, progress by the task's owner, overdue warned once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from common.clock import FrozenClock
from common.demo import demo_id, person_id
from svc_services.base import OutboxEvent
from svc_services.deliberation.models import Topic
from svc_services.deliberation.resolutions import warn_overdue
from svc_services.seed import seed_demo

XF = "110105001001"
A1 = XF + "001"
P3B = A1 + "002"   # 王秀英's building: she is its one household head
START = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
async def svc(service_client):
    c = await service_client("svc_services", sla_scan_enabled=False)
    c.app.state.clock = FrozenClock(START)
    await seed_demo(c.app.state.db, c.app.state.settings, c.app.state.clock)
    return c


def staff(auth, community=XF):
    return auth(role="community_staff", scopes=[f"community:{community}"], user="staff1")


def body(**over):
    return {"title": "厨房漏水牵出整栋楼管道老化", "description": "需全楼改造，社区议事决定。", "category": "maintenance_fund",
            "scope_kind": "grid", "scope_code": A1, "source": "request", **over}


async def counted(c, model):
    async with c.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(model))).scalar_one()


async def test_a_request_escalated_as_a_topic_is_linked_once(svc, auth):
    r1 = demo_id("request", "R1")
    before = await counted(svc, Topic)
    for over, who, want in (({"request_id": "no-such"}, staff(auth), 422), ({}, staff(auth), 422),
                            ({"request_id": r1}, staff(auth, "110105001002"), 403),
                            ({"request_id": r1, "source": "staff"}, staff(auth), 422),
                            ({"request_id": r1, "scope_code": XF + "002", }, staff(auth), 422)):
        r = await svc.post("/services/v1/topics", headers=who, json=body(**over))
        assert r.status_code == want, (over, r.text)
    assert await counted(svc, Topic) == before
    t = await svc.post("/services/v1/topics", headers=staff(auth), json=body(request_id=r1))
    assert t.status_code == 201 and t.json()["stage"] == "open" and t.json()["request_id"] == r1
    again = await svc.post("/services/v1/topics", headers=staff(auth), json=body(request_id=r1))
    assert (again.status_code, again.json()["code"]) == (409, "topic.request_linked")
    found = (await svc.get("/services/v1/topics", params={"request_id": r1}, headers=staff(auth))).json()["items"]
    assert [x["id"] for x in found] == [t.json()["id"]]


async def _passed(svc, auth) -> dict:
    t = (await svc.post("/services/v1/topics", headers=staff(auth), json=body(
        source="staff", scope_kind="building", scope_code=P3B, category="facilities"))).json()
    now = svc.app.state.clock.now()
    assert (await svc.post(f"/services/v1/topics/{t['id']}/vote", headers=staff(auth), json={
        "options": ["同意", "反对"], "eligibility": "household_head", "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(days=1)).isoformat()})).status_code == 201
    p3 = auth(role="resident", scopes=[f"person:{person_id('P3')}"], user="resident3")
    r = await svc.post(f"/services/v1/topics/{t['id']}/resolution",
                       headers=staff(auth), json={"text": "x", "tasks": []})
    assert r.status_code == 422   # a resolution needs tasks
    r = await svc.post(f"/services/v1/topics/{t['id']}/resolution", headers=staff(auth), json={
        "text": "x", "tasks": [{"title": "t", "owner_kind": "community", "owner_ref": XF,
                                "due_at": (now + timedelta(days=1)).isoformat()}]})
    assert (r.status_code, r.json()["code"]) == (409, "resolution.not_passed")
    assert (await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=p3, json={"option": "同意"})).status_code \
        == 200
    v = (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).json()  # all have voted
    assert v["result"]["passed"] and v["result"]["eligible"] == 1
    return t


async def test_tasks_are_reported_by_their_owners_and_overdue_warned_once(svc, auth):
    t = await _passed(svc, auth)
    now = svc.app.state.clock.now()
    r = await svc.post(f"/services/v1/topics/{t['id']}/resolution", headers=staff(auth), json={
        "text": "全楼管道改造", "tasks": [
            {"title": "维修资金申请", "owner_kind": "department", "owner_ref": "zhujian",
             "due_at": (now + timedelta(days=5)).isoformat()},
            {"title": "施工", "owner_kind": "provider", "owner_ref": "o-9", "due_at": (now + timedelta(days=9)).isoformat()}]})
    assert r.status_code == 201, r.text
    fund, build = r.json()["tasks"]
    url = f"/services/v1/topics/{t['id']}/resolution/tasks/{{}}/reports"
    other = auth(role="dept_staff", scopes=["dept:minzheng"], user="mz")
    assert (await svc.post(url.format(fund["id"]), headers=other, json={"text": "?", "percent": 10})).status_code == 404
    zj = auth(role="dept_staff", scopes=["dept:zhujian"], user="zj")
    ok = await svc.post(url.format(fund["id"]), headers=zj, json={"text": "已受理", "percent": 40})
    assert ok.status_code == 200 and ok.json()["done_at"] is None
    forbidden = await svc.post(url.format(build["id"]), headers=zj, json={"text": "不是我的", "percent": 10})
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "task.not_owner")
    svc.app.state.clock.advance(days=6)
    db = svc.app.state.db
    assert (await warn_overdue(db, svc.app.state.clock.now()), await warn_overdue(db, svc.app.state.clock.now())) == (1, 0)
    await svc.post(url.format(fund["id"]), headers=zj, json={"text": "资金到位", "percent": 100})
    provider = auth(role="provider", scopes=["provider:o-9"], user="o9")
    done = await svc.post(url.format(build["id"]), headers=provider, json={"text": "完工", "percent": 100})
    assert done.status_code == 200, done.text
    topic = (await svc.get(f"/services/v1/topics/{t['id']}", headers=staff(auth))).json()
    assert topic["stage"] == "executed" and topic["timeline"][-1]["action"] == "complete"
    async with db.session() as s:
        rows = (await s.execute(select(OutboxEvent.type, OutboxEvent.data).where(
            OutboxEvent.type.in_(["deliberation.task_overdue", "deliberation.task_done",
                                  "deliberation.resolution_executed"])).order_by(OutboxEvent.id))).all()
    assert [(ty, d.get("on_time")) for ty, d in rows] == [
        ("deliberation.task_overdue", None), ("deliberation.task_done", False), ("deliberation.task_done", True),
        ("deliberation.resolution_executed", False)]


async def _request(svc, auth, rid):
    r = await svc.get(f"/services/v1/requests/{rid}", headers=staff(auth))
    assert r.status_code == 200, r.text
    tl = await svc.get(f"/services/v1/requests/{rid}/timeline", headers=staff(auth))
    return r.json(), (tl.json() if tl.status_code == 200 else r.json().get("timeline"))


async def _topic_for(svc, auth, rid, *, vote: bool = True) -> dict:
    """A topic opened from the request over P3's building (王秀英, its one household head), its vote set up."""
    r = await svc.post("/services/v1/topics", headers=staff(auth), json=body(
        request_id=rid, scope_kind="building", scope_code=P3B, category="facilities"))
    assert r.status_code == 201, r.text
    if vote:
        await _vote(svc, auth, r.json()["id"])
    return r.json()


async def _vote(svc, auth, topic_id):
    now = svc.app.state.clock.now()
    assert (await svc.post(f"/services/v1/topics/{topic_id}/vote", headers=staff(auth), json={
        "options": ["同意", "反对"], "eligibility": "household_head", "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(days=1)).isoformat()})).status_code == 201


async def test_a_request_escalated_waits_for_its_topic_and_the_outcome_moves_it_on(svc, auth):
    """R1 (accepted): escalated → deliberating (its timeline names the topic, no caller may move it, the SLA scan
    leaves it); the vote passes → in_progress with its deadlines moved on by the wait; the resolution executed →
    resolved, the outcome on its timeline."""
    from svc_services.sla.scan import run_sla_scan

    rid = demo_id("request", "R1")
    before, _ = await _request(svc, auth, rid)
    t = await _topic_for(svc, auth, rid, vote=False)
    req, timeline = await _request(svc, auth, rid)
    assert req["state"] == "deliberating" and "resume" not in req.get("allowed_actions", [])
    step = timeline[-1]
    assert (step["action"], step["to_state"], step["data"]["topic_id"]) == ("deliberate", "deliberating", t["id"])
    r = await svc.post(f"/services/v1/requests/{rid}/transitions", headers=staff(auth),
                       json={"action": "resume", "version": req["version"], "note": "自行恢复"})
    # only the topic's outcome moves it: the API does not even take the action
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "action", r.text
    svc.app.state.clock.advance(days=20)                                      # past every deadline while it waits
    await run_sla_scan(svc.app.state.db, svc.app.state.clock, svc.app.state.settings)
    assert (await _request(svc, auth, rid))[0]["overdue"] is False
    await _vote(svc, auth, t["id"])
    p3 = auth(role="resident", scopes=[f"person:{person_id('P3')}"], user="resident3")
    assert (await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=p3,
                           json={"option": "同意"})).status_code == 200
    assert (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).json()["result"]["passed"]
    req, timeline = await _request(svc, auth, rid)
    step = timeline[-1]
    assert (req["state"], step["action"], step["data"]["outcome"]) == ("in_progress", "resume", "passed")
    held = timedelta(seconds=step["data"]["held_seconds"])
    assert held >= timedelta(days=20)
    assert (datetime.fromisoformat(req["resolution_due_at"]) - datetime.fromisoformat(before["resolution_due_at"])
            == held)
    now = svc.app.state.clock.now()
    r = await svc.post(f"/services/v1/topics/{t['id']}/resolution", headers=staff(auth), json={
        "text": "全楼管道改造", "tasks": [{"title": "施工", "owner_kind": "community", "owner_ref": XF,
                                      "due_at": (now + timedelta(days=3)).isoformat()}]})
    assert r.status_code == 201, r.text
    task = r.json()["tasks"][0]["id"]
    r = await svc.post(f"/services/v1/topics/{t['id']}/resolution/tasks/{task}/reports", headers=staff(auth),
                       json={"text": "完工", "percent": 100})
    assert r.status_code == 200, r.text
    req, timeline = await _request(svc, auth, rid)
    assert (req["state"], timeline[-1]["action"], timeline[-1]["data"]["outcome"]) == ("resolved", "resolve",
                                                                                      "executed")


async def test_a_topic_not_passed_answers_its_request(svc, auth):
    rid = demo_id("request", "R3")                                            # in progress
    t = await _topic_for(svc, auth, rid)
    p3 = auth(role="resident", scopes=[f"person:{person_id('P3')}"], user="resident3")
    assert (await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=p3,
                           json={"option": "反对"})).status_code == 200
    v = (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).json()
    assert v["result"]["passed"] is False
    req, timeline = await _request(svc, auth, rid)
    assert (req["state"], timeline[-1]["data"]["outcome"]) == ("resolved", "rejected")
    assert "议题表决未通过" in timeline[-1]["note"]
