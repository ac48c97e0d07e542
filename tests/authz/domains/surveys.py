"""Surveys (issue 29, svc_metrics): rules and cells, written from the policy.

The policy (DESIGN "Identity and authorisation", docs/adr/0019-surveys.md):
- a place's surveys are set up, edited, published, closed, sent out and reminded by its community or street staff
  and ops
  (a grid worker visits households but does not run the community's questionnaire; departments, systems,
  evaluators, providers, residents: 403);
- a published questionnaire is read by every signed-in caller (residents answer it); a draft only by place staff
  whose places cover it or lie within it, and ops (anyone else: 404 as for an unknown id);
- the invitation list (for household visits) is for place staff (their places' invitations) and ops;
- a one-time token is handed out to the invited person (or their proxy), or on a household visit to place staff
  covering the invitation's grid (staff elsewhere: 404 as for an unknown invitation); nobody else (403);
- a response is given with a token by a resident or proxy (app), the kiosk, or place staff covering the token's
  place (入户); nobody else answers (403);
- results are read as KPIs are: evaluators, place staff over the survey's place, ops (metrics_reader).

The targets are 幸福 surveys made by staff1 through the APIs, named (so a token keeps grid A1 for the visit check);
svc_metrics learns P1 and P3 (幸福 A1) from person.registered events, as from svc_residents' outbox.
"""
from __future__ import annotations

from tests.authz.policy import A1, HIDE, MANAGERS, P1, P3, PLACE_STAFF, XF, Caller, Rule, allow, metrics_reader, sees_xf
from tests.authz.test_matrix import Cell, World, get, ids

BASE = "/metrics/v1/surveys"
QUESTIONNAIRE = {"sections": [{"key": "main", "title": "满意度", "questions": [
    {"key": "overall", "kind": "likert", "title": "总体满意度", "kpi": True},
    {"key": "needs", "kind": "needs", "title": "需要的服务", "required": False}]}]}


def _manager(c: Caller) -> bool:
    return c.staff_of(XF, MANAGERS) or c.ops


def _sees_draft(c: Caller) -> bool:
    return c.ops or (c.role in PLACE_STAFF and not c.system and sees_xf(c))


RULES = {
    "survey.manage": Rule("幸福's surveys are run by 幸福's and the street's staff and ops (not a grid worker, a "
                          "department, a system, an evaluator, a provider or a resident: 403)", allow(_manager),
                          code=lambda c: "survey.not_manager"),
    "survey.draft_read": Rule("a 幸福 draft: place staff covering 幸福 or within it, ops; anyone else 404",
                              allow(_sees_draft, HIDE)),
    "survey.draft_manage": Rule("a 幸福 draft is changed or published by 幸福's and the street's staff and ops; a "
                                "grid worker of 幸福 sees it but may not (403); others 404",
                                lambda c: "ok" if _manager(c) else ("403" if _sees_draft(c) else HIDE)),
    "survey.invitations": Rule("who is invited: place staff (their places') and ops; others 403",
                               allow(lambda c: c.ops or (c.role in PLACE_STAFF and not c.system))),
    "survey.token": Rule("P1's token: P1 / P3 themselves (or P3's proxy) take their own; staff covering A1 take P1's "
                         "on a visit; staff elsewhere 404 (an invitation out of reach); anyone else 403",
                         lambda c: "ok" if c.own(P1) or c.own(P3) or c.staff_of(A1) else
                         (HIDE if c.role in PLACE_STAFF and not c.system else "403")),
    "survey.respond": Rule("with a token: a resident or proxy (app), the kiosk, place staff covering A1 (入户); "
                           "staff elsewhere and everyone else 403",
                           allow(lambda c: c.role in ("resident", "proxy") or c.member == "kiosk" or c.staff_of(A1))),
    "survey_need.feed": Rule("svc_matching's survey-need intake is svc_metrics' feed (a system member named as a "
                             "source, ADR 0019) or ops; no person, staff, department or other system writes it",
                             allow(lambda c: c.ops)),
    "survey.results": Rule("results are read like KPIs: evaluators, place staff over 幸福, ops",
                           allow(metrics_reader(XF))),
}


def _survey(w: World, publish: bool = True, invite: bool = True) -> dict:
    s = w.call("staff1", "POST", BASE, json={"title": w.uid("授权矩阵问卷"), "kind": "satisfaction",
                                             "anonymous": False, "scope": XF, "period": "2026-Q4",
                                             "questionnaire": QUESTIONNAIRE})
    if publish:
        s = w.call("staff1", "POST", f"{BASE}/{s['id']}/transitions", json={"action": "publish",
                                                                            "version": s["version"]})
    if invite:
        w.call("staff1", "POST", f"{BASE}/{s['id']}/invitations")
    return s


def _shared(w: World, kind: str, make):
    if not w.reuse:
        return make()
    key = ("surveys", kind)
    if key not in w.cache:
        w.cache[key] = make()
    return w.cache[key]


def _p1_invitation(w: World, sid: str) -> str:
    rows = w.call("staff1", "GET", f"{BASE}/{sid}/invitations", params={"limit": 200})["items"]
    return next(r["id"] for r in rows if r["person_id"] == P1)


def create_body(w: World, c: Caller, oid: str | None):
    return "POST", BASE, {"json": {"title": "授权矩阵", "scope": XF, "questionnaire": QUESTIONNAIRE}}


def edit(w: World, c: Caller, oid: str | None):
    s = _shared(w, "draft", lambda: _survey(w, publish=False, invite=False))
    return "PUT", f"{BASE}/{oid or s['id']}", {"json": {"version": s["version"], "title": "改过的标题"}}


def publish(w: World, c: Caller, oid: str | None):
    s = _shared(w, "draft", lambda: _survey(w, publish=False, invite=False))
    return "POST", f"{BASE}/{oid or s['id']}/transitions", {"json": {"action": "publish", "version": s["version"]}}


def revise(w: World, c: Caller, oid: str | None):
    return "POST", f"{BASE}/{oid or w.ids['survey_pub']}/revisions", {}


def invite(w: World, c: Caller, oid: str | None):
    s = _shared(w, "published", lambda: _survey(w, invite=False))
    return "POST", f"{BASE}/{oid or s['id']}/invitations", {}


def remind(w: World, c: Caller, oid: str | None):
    s = _shared(w, "remind", lambda: _survey(w))   # a fresh one for each permitted caller: one reminder a survey
    return "POST", f"{BASE}/{oid or s['id']}/reminders", {}


def take_token(w: World, c: Caller, oid: str | None):
    s = _shared(w, "invited", lambda: _survey(w))
    if c.role in ("resident", "proxy"):
        return "POST", f"{BASE}/{oid or s['id']}/invitations/token", {"json": {}}
    inv = oid or _shared(w, "inv", lambda: _p1_invitation(w, s["id"]))
    return "POST", f"{BASE}/{s['id']}/invitations/token", {"json": {"invitation_id": inv}}


def respond(w: World, c: Caller, oid: str | None):
    def made():
        s = _survey(w)
        tok = w.call("staff1", "POST", f"{BASE}/{s['id']}/invitations/token",
                     json={"invitation_id": _p1_invitation(w, s["id"])})["token"]
        return s["id"], tok
    sid, tok = _shared(w, "token", made)
    channel = "visit" if c.role in PLACE_STAFF and not c.system else "app"
    return "POST", f"{BASE}/{oid or sid}/responses", {"json": {"token": tok, "channel": channel,
                                                               "answers": {"overall": 5}}}


def feed(w: World, c: Caller, oid: str | None):
    return "PUT", f"/matching/v1/survey_needs/{oid or w.uid('authz-demand')}", {"json": {
        "kind": "demand", "survey_id": "authz-survey", "title": "授权矩阵", "items": [
            {"place_code": A1, "category": "health", "count": 1}]}}


CELLS = {
    "PUT /matching/v1/survey_needs/{subject}": [Cell("survey_need.feed", feed)],
    f"POST {BASE}": [Cell("survey.manage", create_body)],
    f"GET {BASE}": [Cell("public", get(BASE))],
    f"GET {BASE}/{{survey_id}}": [Cell("public", get(BASE + "/{}", ids("survey_pub"))),
                                  Cell("survey.draft_read", get(BASE + "/{}", ids("survey_draft")))],
    f"PUT {BASE}/{{survey_id}}": [Cell("survey.draft_manage", edit)],
    f"POST {BASE}/{{survey_id}}/transitions": [Cell("survey.draft_manage", publish)],
    f"POST {BASE}/{{survey_id}}/revisions": [Cell("survey.manage", revise)],
    f"POST {BASE}/{{survey_id}}/invitations": [Cell("survey.manage", invite)],
    f"POST {BASE}/{{survey_id}}/reminders": [Cell("survey.manage", remind)],
    f"GET {BASE}/{{survey_id}}/invitations": [Cell("survey.invitations", get(BASE + "/{}/invitations",
                                                                             ids("survey_pub")))],
    f"POST {BASE}/{{survey_id}}/invitations/token": [Cell("survey.token", take_token)],
    f"POST {BASE}/{{survey_id}}/responses": [Cell("survey.respond", respond)],
    f"GET {BASE}/{{survey_id}}/results": [Cell("survey.results", get(BASE + "/{}/results", ids("survey_pub")))],
}

FILL = {"{survey_id}": "no-such-survey", "{subject}": "no-such-subject"}


def setup(w: World) -> None:
    now = w.gw.state.clock.now().isoformat()
    w.call("ops1", "POST", "/metrics/v1/events", json={"events": [
        {"event_id": w.uid("authz-person"), "type": "person.registered", "occurred_at": now, "source": "authz",
         "community": XF, "grid": A1, "subject": pid, "data": {"age_band": "60+"}} for pid in (P1, P3)]})
    w.ids["survey_pub"] = _survey(w)["id"]
    w.ids["survey_draft"] = _survey(w, publish=False, invite=False)["id"]
