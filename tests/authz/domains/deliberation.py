"""Resident deliberation and public notices (issue 28, svc_services): rules and cells, written from the policy.

The policy (DESIGN "Identity and authorisation", ADR 0018, svc_services/deliberation/access.py):
- a topic belongs to its scope (a building, grid or community): it is seen by the scope's residents (or their
  proxies), by place staff whose places hold the scope or lie inside it, by departments invited to one of its
  meetings (吹哨报到) or owning one of its resolution's tasks, and by ops; anyone else gets 404 as for an unknown
  id; member systems (a kiosk, a registry feed) and evaluators take no part (403);
- a topic is run (moved, moderated, meetings called and recorded, a vote set up and counted) by community and
  street staff over its scope and ops; a grid worker runs only topics within their grid (a building's); a
  resolution is adopted by community / street staff and ops; progress is reported by those who run the topic and
  by the task's owner (its department or provider);
- residents of the scope propose, co-sign, comment, vote and object for themselves (a proxy for their person);
  staff comment as moderators; nobody else;
- a public notice (公示) is published, withdrawn and its objections answered by community and street staff over
  its scope and ops; once published it is public (every caller reads it, and /services/v1/public/ without any
  token); objections are read by the publishers (all) and residents (their own).

Targets: 幸福's community topic (open, a comment, a held meeting), 幸福's voting topic, P3's building topic (A1,
counted and passed; another with a resolution whose task 民政 owns), 幸福's policy notice with an objection.
"""
from __future__ import annotations

from datetime import timedelta

from deploy.demo import person_id
from tests.authz.policy import A1, DENY, HIDE, MANAGERS, P1, P3, PLACE_STAFF, XF, Caller, Rule, allow
from tests.authz.test_matrix import Cell, World, get, holds, ids

P2 = person_id("P2")
P1B, P3B = A1 + "001", A1 + "002"   # P1's and P3's buildings (grid A1 of 幸福)
PARTAKERS = ("resident", "proxy", *PLACE_STAFF, "dept_staff", "provider", "ops")


def _gate(c: Caller) -> bool:
    return c.role in PARTAKERS


def _xf_resident(c: Caller) -> bool:
    return c.own(P1) or c.own(P3)


def _staff_meets(c: Caller, scope: str) -> bool:
    return c.ops or (c.role in PLACE_STAFF and (c.covers(scope) or any(p.startswith(scope) for p in c.places)))


def _sees_xf(c: Caller) -> bool:
    return _xf_resident(c) or _staff_meets(c, XF)


def _sees_p3b(c: Caller) -> bool:
    return c.own(P3) or _staff_meets(c, P3B)


def _mz(c: Caller) -> bool:
    return c.role == "dept_staff" and "minzheng" in c.values("dept")


def _refuse(sees):
    return lambda c: DENY if not _gate(c) or sees(c) else HIDE


def _publisher(c: Caller) -> bool:
    return c.staff_of(XF, MANAGERS) or c.ops


RULES = {
    "topic.policy": Rule("a community's co-sign threshold is set by its community and street staff and ops",
                         allow(lambda c: c.staff_of(XF, MANAGERS) or c.ops)),
    "topic.create": Rule("residents propose for their own place (P1, P3 and proxy1 for P3); staff over the scope "
                         "(A1: its grid worker, 幸福's and the street's staff) and ops open topics; departments, "
                         "providers, evaluators, member systems do not (403)",
                         allow(lambda c: _xf_resident(c) or c.staff_of(A1) or c.ops)),
    "topic.list": Rule("every partaker lists the topics in reach (幸福's for its residents and staff); evaluators "
                       "and member systems 403", allow(_gate)),
    "topic.read": Rule("幸福's topic: its residents, staff whose places meet 幸福, ops; others 404",
                       allow(_sees_xf, _refuse(_sees_xf))),
    "topic.manage": Rule("幸福's community topic is run by 幸福's and the street's staff and ops (a grid worker "
                         "sees it, does not run a community's topic; residents see, 403)",
                         allow(lambda c: c.staff_of(XF, MANAGERS) or c.ops, _refuse(_sees_xf))),
    "topic.comment": Rule("residents of 幸福 (proxy1 for P3) comment, its managers too; a grid worker does not",
                          allow(lambda c: _xf_resident(c) or c.staff_of(XF, MANAGERS) or c.ops, _refuse(_sees_xf))),
    "topic.cosign": Rule("a proposal of P2 in grid A1 is co-signed by residents of A1 (P1, P3, proxy1); no one "
                         "else co-signs (403)", allow(_xf_resident)),
    "topic.ballot": Rule("幸福's vote (adults): P1, P3 (proxy1 for P3) vote; staff see but do not vote (403); "
                         "others 404", allow(_xf_resident, _refuse(_sees_xf))),
    "topic.read.p3b": Rule("P3's building topic: P3 (proxy1), staff over grid A1 and above, ops; others 404",
                           allow(_sees_p3b, _refuse(_sees_p3b))),
    "topic.close": Rule("P3's building vote is counted by staff over A1 (its grid worker too) and ops",
                        allow(lambda c: c.staff_of(P3B) or c.ops, _refuse(_sees_p3b))),
    "topic.resolve": Rule("a resolution is adopted by community and street staff over the scope and ops (not the "
                          "grid worker, who sees it)", allow(lambda c: c.staff_of(P3B, MANAGERS) or c.ops,
                                                             _refuse(_sees_p3b))),
    "topic.read.resolved": Rule("a topic with a task owned by 民政: as topic.read.p3b, and 民政's staff",
                                allow(lambda c: _sees_p3b(c) or _mz(c), _refuse(lambda c: _sees_p3b(c) or _mz(c)))),
    "topic.report": Rule("progress on 民政's task: those who run the topic (A1's staff, ops) and 民政; P3 sees, 403",
                         allow(lambda c: c.staff_of(P3B) or c.ops or _mz(c),
                               _refuse(lambda c: _sees_p3b(c) or _mz(c)))),
    "notice.publish": Rule("公示 of 幸福 are published, withdrawn and answered by 幸福's and the street's staff and "
                           "ops; anyone else 403", allow(_publisher)),
    "notice.object": Rule("residents of 幸福 (proxy1 for P3) object to 幸福's notice in its objection period",
                          allow(_xf_resident)),
    "notice.objections": Rule("objections are read by the publishers (all) and residents (their own)",
                              allow(lambda c: c.role in ("resident", "proxy") or _publisher(c))),
}


def _now(w: World):
    return w.pt.platform.apps["svc_services"].state.clock.now()


def _topic(w: World, scope: str, kind: str, **over) -> dict:
    return w.call("staff1", "POST", "/services/v1/topics", json={
        "title": w.uid("授权矩阵议题"), "description": "授权矩阵", "category": "environment", "scope_kind": kind,
        "scope_code": scope, "source": "staff", **over})


def _vote(w: World, t: dict, **over) -> dict:
    now = _now(w)
    return w.call("staff1", "POST", f"/services/v1/topics/{t['id']}/vote", json={
        "options": ["同意", "反对"], "eligibility": "adult", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(days=30)).isoformat(), **over})


def _p3_passed(w: World, **vote) -> dict:
    """P3's building topic, voted by P3 (the only household head there), counted and passed."""
    t = _topic(w, P3B, "building")
    _vote(w, t, eligibility="household_head", **vote)
    w.call("resident3", "POST", f"/services/v1/topics/{t['id']}/ballots", json={"option": "同意"})
    w.call("staff1", "POST", f"/services/v1/topics/{t['id']}/vote/close")
    return t


def _p3_voted(w: World) -> dict:
    t = _topic(w, P3B, "building")
    _vote(w, t, eligibility="household_head")
    w.call("resident3", "POST", f"/services/v1/topics/{t['id']}/ballots", json={"option": "同意"})
    return t


def _resolution(w: World, t: dict) -> dict:
    return w.call("staff1", "POST", f"/services/v1/topics/{t['id']}/resolution", json={
        "text": "授权矩阵决议", "tasks": [{"title": "民政落实", "owner_kind": "department", "owner_ref": "minzheng",
                                        "due_at": (_now(w) + timedelta(days=30)).isoformat()}]})


def _notice(w: World) -> dict:
    now = _now(w)
    return w.call("staff1", "POST", "/services/v1/notices", json={
        "kind": "policy", "title": w.uid("授权矩阵公示"), "body": "授权矩阵", "scope_code": XF,
        "publish_from": (now - timedelta(hours=1)).isoformat(), "publish_until": (now + timedelta(days=30)).isoformat(),
        "objection_until": (now + timedelta(days=10)).isoformat()})


def _shared(w: World, kind: str, make):
    if not w.reuse:
        return make()
    key = ("deliberation", kind)
    if key not in w.cache:
        w.cache[key] = make()
    return w.cache[key]


def create_body(w: World, c: Caller, oid):
    if c.role in ("resident", "proxy"):
        body = {"scope_kind": "building", "scope_code": P1B if c.own(P1) else P3B, "source": "proposal"}
    else:
        body = {"scope_kind": "grid", "scope_code": A1, "source": "staff"}
    return "POST", "/services/v1/topics", {"json": {"title": w.uid("授权矩阵提议"), "description": "授权矩阵",
                                                    "category": "environment", **body}}


def move(w: World, c: Caller, oid):
    t = _shared(w, "open", lambda: _topic(w, XF, "community"))
    return "POST", f"/services/v1/topics/{oid or t['id']}/transitions", {
        "json": {"action": "decline", "version": t["version"], "note": "授权矩阵"}}


def cosign(w: World, c: Caller, oid):
    p2 = w.pt.platform.headers("resident1", scopes=[f"person:{P2}"], user="resident2")
    t = _shared(w, "proposal", lambda: w.call("resident1", "POST", "/services/v1/topics", headers=p2, json={
        "title": w.uid("授权矩阵联署"), "description": "授权矩阵", "category": "environment", "scope_kind": "grid",
        "scope_code": A1}))
    return "POST", f"/services/v1/topics/{oid or t['id']}/cosigns", {}


def comment(w: World, c: Caller, oid):
    return "POST", f"/services/v1/topics/{oid or w.ids['topic_xf']}/comments", {"json": {"text": "授权矩阵意见"}}


def hide(w: World, c: Caller, oid):
    cm = _shared(w, "comment", lambda: w.call("resident1", "POST", f"/services/v1/topics/{w.ids['topic_xf']}/comments",
                                              json={"text": "授权矩阵待隐藏"}))
    return "POST", f"/services/v1/topics/{oid or w.ids['topic_xf']}/comments/{cm['id']}/hide", {
        "json": {"reason": "授权矩阵"}}


def meeting(w: World, c: Caller, oid):
    t = _shared(w, "open", lambda: _topic(w, XF, "community"))
    return "POST", f"/services/v1/topics/{oid or t['id']}/meetings", {"json": {
        "starts_at": (_now(w) + timedelta(days=1)).isoformat(), "place": "议事厅",
        "members": [{"kind": "department", "ref": "zhujian"}]}}


def record(w: World, c: Caller, oid):
    return "POST", f"/services/v1/topics/{oid or w.ids['topic_xf']}/meetings/{w.ids['meeting_xf']}/record", {
        "json": {"attended": ["p-authz"], "minutes": "授权矩阵纪要"}}


def vote(w: World, c: Caller, oid):
    t = _shared(w, "open", lambda: _topic(w, XF, "community"))
    now = _now(w)
    return "POST", f"/services/v1/topics/{oid or t['id']}/vote", {"json": {
        "options": ["同意", "反对"], "eligibility": "adult", "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(days=3)).isoformat()}}


def ballot(w: World, c: Caller, oid):
    return "POST", f"/services/v1/topics/{oid or w.ids['topic_vote']}/ballots", {"json": {"option": "同意"}}


def close(w: World, c: Caller, oid):
    t = _shared(w, "voted", lambda: _p3_voted(w))
    return "POST", f"/services/v1/topics/{oid or t['id']}/vote/close", {}


def resolve(w: World, c: Caller, oid):
    t = _shared(w, "passed", lambda: _p3_passed(w))
    return "POST", f"/services/v1/topics/{oid or t['id']}/resolution", {"json": {
        "text": "授权矩阵决议", "tasks": [{"title": "落实", "owner_kind": "community", "owner_ref": XF,
                                        "due_at": (_now(w) + timedelta(days=30)).isoformat()}]}}


def report(w: World, c: Caller, oid):
    return "POST", f"/services/v1/topics/{oid or w.ids['topic_resolved']}/resolution/tasks/{w.ids['task_mz']}/reports", {
        "json": {"text": "授权矩阵进展", "percent": 50}}


def publish(w: World, c: Caller, oid):
    now = _now(w)
    return "POST", "/services/v1/notices", {"json": {
        "kind": "staffing", "title": w.uid("授权矩阵人员公示"), "body": "授权矩阵", "scope_code": XF,
        "publish_from": now.isoformat(), "publish_until": (now + timedelta(days=7)).isoformat()}}


def withdraw(w: World, c: Caller, oid):
    n = _shared(w, "notice", lambda: _notice(w))
    return "POST", f"/services/v1/notices/{oid or n['id']}/withdraw", {"json": {"reason": "授权矩阵"}}


def object_to(w: World, c: Caller, oid):
    return "POST", f"/services/v1/notices/{oid or w.ids['notice_xf']}/objections", {"json": {"text": "授权矩阵异议"}}


def answer(w: World, c: Caller, oid):
    o = _shared(w, "objection", lambda: w.call("resident1", "POST",
                                               f"/services/v1/notices/{w.ids['notice_xf']}/objections",
                                               json={"text": "授权矩阵待答复"}))
    return "POST", f"/services/v1/notices/{oid or w.ids['notice_xf']}/objections/{o['id']}/answer", {
        "json": {"answer": "已核实，予以说明"}}


T = "/services/v1/topics/{topic_id}"
CELLS = {
    "PUT /services/v1/deliberation/electors/{person_id}": [Cell("feed.profiles", lambda w, c, oid: (
        "PUT", f"/services/v1/deliberation/electors/{w.uid('authz-el')}", {"json": {
            "building_code": P1B, "household_id": "authz-hh"}}))],
    "DELETE /services/v1/deliberation/electors/{person_id}": [Cell("feed.profiles", lambda w, c, oid: (
        "DELETE", f"/services/v1/deliberation/electors/{w.uid('authz-el')}", {"params": {"version": 1}}))],
    "PUT /services/v1/deliberation/policies/{community_code}": [Cell("topic.policy", lambda w, c, oid: (
        "PUT", f"/services/v1/deliberation/policies/{XF}", {"json": {"cosign_threshold": 10}}))],
    "POST /services/v1/topics": [Cell("topic.create", create_body)],
    "GET /services/v1/topics": [Cell("topic.list", get("/services/v1/topics", limit=200), holds("topic_xf"),
                                     _sees_xf)],
    f"GET {T}": [Cell("topic.read", get("/services/v1/topics/{}", ids("topic_xf")))],
    f"POST {T}/transitions": [Cell("topic.manage", move)],
    f"POST {T}/cosigns": [Cell("topic.cosign", cosign)],
    f"POST {T}/comments": [Cell("topic.comment", comment)],
    f"GET {T}/comments": [Cell("topic.read", get("/services/v1/topics/{}/comments", ids("topic_xf")))],
    f"POST {T}/comments/{{comment_id}}/hide": [Cell("topic.manage", hide)],
    f"POST {T}/meetings": [Cell("topic.manage", meeting)],
    f"GET {T}/meetings": [Cell("topic.read", get("/services/v1/topics/{}/meetings", ids("topic_xf")))],
    f"POST {T}/meetings/{{meeting_id}}/record": [Cell("topic.manage", record)],
    f"POST {T}/vote": [Cell("topic.manage", vote)],
    f"GET {T}/vote": [Cell("topic.read", get("/services/v1/topics/{}/vote", ids("topic_vote")))],
    f"POST {T}/ballots": [Cell("topic.ballot", ballot)],
    f"POST {T}/vote/close": [Cell("topic.close", close)],
    f"GET {T}/vote/verify": [Cell("topic.read.p3b", get("/services/v1/topics/{}/vote/verify", ids("topic_closed")))],
    # who voted what in a named vote, once counted: whoever sees the topic (a secret one: nobody, tested in
    # tests/svc_services/test_deliberation_ballots.py)
    f"GET {T}/vote/ballots": [Cell("topic.read.p3b", get("/services/v1/topics/{}/vote/ballots", ids("topic_named")))],
    f"POST {T}/resolution": [Cell("topic.resolve", resolve)],
    f"GET {T}/resolution": [Cell("topic.read.resolved", get("/services/v1/topics/{}/resolution",
                                                            ids("topic_resolved")))],
    f"POST {T}/resolution/tasks/{{task_id}}/reports": [Cell("topic.report", report)],
    "POST /services/v1/notices": [Cell("notice.publish", publish)],
    "GET /services/v1/notices": [Cell("public", get("/services/v1/notices", limit=200), holds("notice_xf"),
                                      lambda c: True)],
    "GET /services/v1/notices/{notice_id}": [Cell("public", get("/services/v1/notices/{}", ids("notice_xf")))],
    "POST /services/v1/notices/{notice_id}/withdraw": [Cell("notice.publish", withdraw)],
    "POST /services/v1/notices/{notice_id}/objections": [Cell("notice.object", object_to)],
    "GET /services/v1/notices/{notice_id}/objections": [Cell("notice.objections", get(
        "/services/v1/notices/{}/objections", ids("notice_xf")))],
    "POST /services/v1/notices/{notice_id}/objections/{objection_id}/answer": [Cell("notice.publish", answer)],
    "GET /services/v1/public/notices": [Cell("public", get("/services/v1/public/notices", limit=200),
                                             holds("notice_xf"), lambda c: True)],
    "GET /services/v1/public/notices/{notice_id}": [Cell("public", get("/services/v1/public/notices/{}",
                                                                       ids("notice_xf")))],
}

FILL = {"{topic_id}": "no-such-topic", "{comment_id}": "no-such-comment", "{meeting_id}": "no-such-meeting",
        "{task_id}": "no-such-task", "{notice_id}": "no-such-notice", "{objection_id}": "no-such-objection",
        "{community_code}": XF, "{person_id}": "authz-elector-probe"}


def setup(w: World) -> None:
    t = _topic(w, XF, "community")
    w.ids["topic_xf"] = t["id"]
    w.call("resident1", "POST", f"/services/v1/topics/{t['id']}/comments", json={"text": "授权矩阵"})
    w.ids["meeting_xf"] = w.call("staff1", "POST", f"/services/v1/topics/{t['id']}/meetings", json={
        "starts_at": (_now(w) - timedelta(hours=1)).isoformat(), "place": "幸福社区议事厅",
        "members": [{"kind": "resident_rep", "ref": "p-authz"}]})["id"]
    v = _topic(w, XF, "community")
    _vote(w, v, changeable=True)
    w.ids["topic_vote"] = v["id"]
    w.ids["topic_closed"] = _p3_passed(w)["id"]
    w.ids["topic_named"] = _p3_passed(w, secret=False)["id"]   # a named ballot, counted
    r = _p3_passed(w)
    w.ids["topic_resolved"] = r["id"]
    w.ids["task_mz"] = _resolution(w, r)["tasks"][0]["id"]
    w.ids["notice_xf"] = _notice(w)["id"]
