"""Every endpoint of svc_services (with its Open311 face), svc_matching, svc_metrics and the gateway's own
/exchange/v1 × every caller of tests/authz/policy.py, through the gateway, on the demo district.

The endpoint list comes from the apps' own OpenAPI (the gateway's aggregated document): an endpoint with no entry
in CELLS (this module's, and those of the domain modules in tests/authz/domains/) fails the test, and so does an entry for an endpoint that no longer exists.

The gateway's account endpoints (/auth/v1: staff accounts, one's own sessions, password and second factor, token
revocation, userinfo) run for the four demo administrators too (policy.ADMINS), every person calling them with a
session of their own (signed in; administrators with TOTP) and member systems with their client-credentials token.

Each endpoint has one or more cells: a rule of policy.RULES (a stated rule with its reason) applied to a target
object (a 幸福 object for object endpoints, so that 安康's staff, the other resident, another department's system
are cells of every object type). What a caller must get comes from the rule only:
  ok   2xx: the call is made as an allowed caller would make it, with a valid body built per operation and, for
       a call that changes state, on a fresh object of its own (a request filed for it, an item created for it,
       a pending grant applied for it), so that one caller's answer never decides the next one's;
  403  refused (problem+json, and with the problem code the rule states, where it states one);
  404  hidden, and then the same call on an unknown id must answer the same status and problem code (the object's
       existence does not leak; issue 23 finding 9).
Because every write carries a body that passes validation, a 4xx about the input (400/409/412/422/428) is never
taken for a refusal: the test fails on it. No call may answer 5xx. Lists also check what they hold: the target
object is in an allowed caller's list exactly when the rule's `sees` says it may see it.
Token failures are in test_tokens.py; object cases beyond the matrix in test_objects.py.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest

from common.demo import DEMO_PASSWORD
from tests.authz import acting
from tests.signin import password_form
from deploy.demo import demo_id, person_id
from svc_services.catalogue.schemas import ItemContent
from tests.authz.policy import (A1, A2, ADMINS, BY_NAME, CALLERS, DENY, HIDE, OK, P1, RULES, XF, Caller,
                                metrics_role, sees_xf)

PREFIXES = ("/services/", "/open311/", "/matching/", "/metrics/", "/exchange/", "/auth/")
PUBLIC = {"POST /auth/v1/token"}  # anonymous by design (it is how a token is obtained)
UNKNOWN = "00000000-0000-7000-8000-000000000000"


# ----------------------------------------------------------------------------------- kept for test_tokens.py
def fill(path: str, ids: dict[str, str]) -> str:
    if path.startswith("/services/v1/catalogue/items/{code}"):
        path = path.replace("{code}", "SH-WX-001")
    elif path.startswith("/services/v1/requester_profiles/{person_id}"):
        path = path.replace("{person_id}", "authz-profile-probe")
    elif path.startswith("/services/v1/grids/{code}"):
        path = path.replace("{code}", A1)
    elif path.startswith("/exchange/v1/members/{code}"):
        path = path.replace("{code}", "no-such-member")
    elif path.startswith("/exchange/v1/catalogue/{code}"):
        path = path.replace("{code}", "gongan.hukou")
    elif path.startswith("/metrics/v1/kpis/{code}"):
        path = path.replace("{code}", "request_volume").replace("{scope}", XF)
    path = path.replace("{fmt}", "json").replace("{service_code}", "SH-WX-001").replace("{token}", "no-such-token")
    path = path.replace("{username}", "no-such-account").replace("{session_id}", "no-such-session")
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    for name, value in DOMAIN_FILL.items():
        path = path.replace(name, value)
    assert "{" not in path, path
    return path


def endpoints(pt) -> list[str]:
    doc = pt.request("GET", "/openapi.json").json()
    assert not doc["info"].get("x-onenet-unavailable")
    out = []
    for path, item in doc["paths"].items():
        if path.startswith(PREFIXES) and not path.startswith("/residents/"):
            out += [f"{m.upper()} {path}" for m in item if m in ("get", "post", "put", "patch", "delete")]
    return sorted(out)


# ----------------------------------------------------------------------------------------------- the world
def shared(fn):
    """A fresh object per allowed caller; callers the rule refuses share one per cell (a refused call must not
    change it, and if it does the cell fails anyway): keeps the matrix fast."""
    def wrapper(self, *args, **kw):
        if not self.reuse:
            return fn(self, *args, **kw)
        key = (fn.__name__, args, tuple(sorted(kw.items())))
        if key not in self.cache:
            self.cache[key] = fn(self, *args, **kw)
        return self.cache[key]
    return wrapper


class World:
    """The demo district plus the objects the cells aim at, made through the APIs as ops or 幸福's staff."""

    def __init__(self, pt, ids: dict[str, str]) -> None:
        self.pt, self.ids = pt, ids
        self.n = 0
        self.orgs: dict[str, str] = {}
        self.reuse, self.cache = False, {}
        self.gw = pt.platform.gateway
        self.passwords: dict[str, str] = {}  # people whose password a cell changed (restored afterwards)
        self.sessions: dict[str, dict] = {}  # each person's current session (a sign-in's token answer)
        self.totp: dict[str, str] = {}  # TOTP secrets of those enrolled here

    def headers(self, c: Caller | str) -> dict[str, str]:
        c = BY_NAME[c] if isinstance(c, str) else c
        return self.pt.platform.headers(c.base, **c.over)

    def call(self, who, method: str, url: str, want: int | tuple = (200, 201), **kw) -> Any:
        r = self.pt.request(method, url, **{"headers": self.headers(who), **kw})
        assert r.status_code in ((want,) if isinstance(want, int) else want), (method, url, r.status_code, r.text)
        return r.json() if r.content else None

    def uid(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:04d}-{uuid.uuid4().hex[:6]}"

    # people's sessions (ADR 0015) ---------------------------------------------------------------------------
    def sign_in(self, c: Caller, **extra) -> Any:
        return self.pt.request("POST", "/auth/v1/token", data=password_form(
            c.user, self.gw.state.clock.now(), password=self.passwords.get(c.user, DEMO_PASSWORD), **extra))

    def enrolment_ticket(self, c: Caller) -> dict[str, str]:
        """What an administrator (or a role of ONENET_MFA_REQUIRED_ROLES) without a factor gets from signing in."""
        r = self.sign_in(c)
        assert r.status_code == 403 and r.json()["code"] == "mfa.enrolment_required", (c.name, r.text)
        return {"Authorization": f"Bearer {r.json()['enrolment_token']}"}

    def enrol(self, c: Caller, h: dict[str, str]) -> str:
        secret = self.call(c, "POST", "/auth/v1/mfa/totp/enrol", headers=h)["secret"]
        self.totp[c.user] = secret
        return secret

    def session(self, c: Caller, fresh: bool = False) -> dict:
        """The caller's session (its token answer, with `h` the headers); `fresh`: a new one. The first is a
        sign-in through /auth/v1/token (with the TOTP code where the policy requires it, enrolling first); as a
        TOTP code is good once per 30-s step, later sessions of such callers are started as that sign-in starts
        them (gateway/accounts/sessions.py)."""
        s = self.sessions.get(c.name)
        if s is not None and not fresh and s["session_id"] not in self.gw.state.revoked_sessions:
            return s
        if s is None:
            r = self.sign_in(c)
            if r.status_code == 403 and r.json().get("code") == "mfa.enrolment_required":
                h = {"Authorization": f"Bearer {r.json()['enrolment_token']}"}
                secret = self.enrol(c, h)
                self.call(c, "POST", "/auth/v1/mfa/totp/activate", headers=h,
                          json={"code": pyotp.TOTP(secret).at(self.gw.state.clock.now())})
                r = self.sign_in(c, otp=pyotp.TOTP(secret).at(self.gw.state.clock.now(), counter_offset=1))
            assert r.status_code == 200, (c.name, r.text)
            s = r.json()
        else:
            s = self.pt.run(self._start(c))
        s["h"] = {"Authorization": f"Bearer {s['access_token']}"}
        if not fresh or c.name not in self.sessions:
            self.sessions[c.name] = s
        return s

    async def _start(self, c: Caller) -> dict:
        from gateway.accounts.mfa import mfa_required
        from gateway.members.models import User

        state = self.gw.state
        async with state.db.session() as session:
            user = await session.get(User, c.user)
        return await state.sessions.start(user, "portal", state.clock.now(), source="authz", user_agent="authz",
                                          mfa=mfa_required(user, state.settings.mfa_required_roles))

    def auth(self, c: Caller) -> dict[str, str]:
        """A person calls the account endpoints with their session, a member system with its own token."""
        return self.headers(c) if c.system else self.session(c)["h"]

    def drop_factor(self, c: Caller) -> None:
        """The caller has no second factor (as before its first enrolment, or after an administrator's reset)."""
        from sqlalchemy import delete

        from gateway.accounts.models import TotpFactor

        async def go():
            async with self.gw.state.db.session() as s, s.begin():
                await s.execute(delete(TotpFactor).where(TotpFactor.username == c.user))
        self.pt.run(go())

    def restore_passwords(self) -> None:
        from gateway.identity.tokens import hash_secret
        from gateway.members.models import User

        async def go():
            hashed = hash_secret(DEMO_PASSWORD)
            async with self.gw.state.db.session() as s, s.begin():
                for name in self.passwords:
                    (await s.get(User, name)).password_hash = hashed
        if self.passwords:
            self.pt.run(go())

    # fresh objects ------------------------------------------------------------------------------------------
    @shared
    def request_p1(self, actions=("accept",)) -> dict:
        req = self.call("ops1", "POST", "/services/v1/requests", json={**REQUEST_BODY, "person_id": P1})
        for a in actions:
            req = self.call("staff1", "POST", f"/services/v1/requests/{req['id']}/transitions",
                            json={"action": a, "version": req["version"]})
        return req

    @shared
    def item(self, scope: str | None, department: str, active: bool = True) -> str:
        code = self.uid("AUTHZ").upper()
        base = self.call("ops1", "GET", "/services/v1/catalogue/items/SH-WX-001")
        content = {k: base[k] for k in ItemContent.model_fields}
        self.call("ops1", "POST", "/services/v1/catalogue/items", json={
            **content, "code": code, "name": f"authz {code}", "department": department, "scope": scope})
        if not active:
            self.call("ops1", "DELETE", f"/services/v1/catalogue/items/{code}")
        return code

    @shared
    def need_p1(self) -> str:
        return self.call("staff1", "POST", "/matching/v1/needs", json=need_body())["id"]

    @shared
    def offer_p1(self, accepted: bool = False) -> dict:
        """An offer of a fresh need of P1 to O1 (provider1): other candidates the engine puts first are declined."""
        need = self.need_p1()
        offer = self.call("staff1", "POST", f"/matching/v1/needs/{need}/match")["offer"]
        for _ in range(6):
            assert offer, need
            if offer["provider_kind"] == "service" and self.service_org(offer["provider_id"]) == O1_ID:
                break
            offer = self.call("ops1", "POST", f"/matching/v1/offers/{offer['id']}/decline",
                              json={"reason": "authz matrix: O1 wanted"})["next_offer"]
        else:
            raise AssertionError(f"no offer to O1 for need {need}")
        if accepted:
            offer = self.call("ops1", "POST", f"/matching/v1/offers/{offer['id']}/accept")
        return offer

    def service_org(self, service_id: str) -> str:
        if service_id not in self.orgs:
            self.orgs[service_id] = self.call("ops1", "GET", f"/matching/v1/services/{service_id}")["organization_id"]
        return self.orgs[service_id]

    @shared
    def person_a2(self) -> str:
        """A person of 幸福 A2 newly known to svc_matching (its place replica, as svc_residents' feed sends it)."""
        pid = str(uuid.uuid4())
        self.call("ops1", "PUT", f"/matching/v1/person_places/{pid}", json={
            "grid_code": A2, "community_code": XF, "version": 1})
        return pid

    @shared
    def grant_pending(self) -> str:
        """kiosk applies for 民政's assistance status: a pending application of its own."""
        return self.call("kiosk", "POST", "/exchange/v1/grants", json={
            "resource": "minzheng.assistance", "purpose": f"authz matrix {self.uid('g')}"})["id"]

    @shared
    def grant_approved(self) -> str:
        g = self.grant_pending()
        self.call("sys_minzheng", "POST", f"/exchange/v1/grants/{g}/approve", json=approve_body())
        return g

    @shared
    def member(self) -> str:
        code = self.uid("authz-m")
        self.call("ops1", "POST", "/exchange/v1/members", json={"code": code, "name": "授权矩阵测试", "kind": "app",
                                                                "role": "system", "scopes": []})
        return code

    def victim(self) -> dict:
        """A session of another person's (a 幸福 grid worker signed in): nobody's but theirs to end."""
        if "victim" not in self.cache:
            name = self.ids["account_xf"]
            r = self.pt.request("POST", "/auth/v1/token", data={"grant_type": "password", "username": name,
                                                                "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.cache["victim"] = r.json()
        return self.cache["victim"]

    @shared
    def account(self, role: str = "grid_worker", scope: str = f"grid:{A2}", admin: bool = False) -> str:
        """A fresh staff account of 幸福, created by the platform administrator."""
        name = self.uid("authz-acct")
        self.call("admin_ops", "POST", "/auth/v1/accounts", headers=self.auth(BY_NAME["admin_ops"]),
                  json=account_body(name, role, scope, admin))
        return name

    @shared
    def warning(self, scope: str = XF, case: bool = False) -> tuple[str, str | None]:
        """A warning (and its rectification case) of 幸福, written into svc_metrics as its scan would."""
        from svc_metrics.alerts.models import RectificationCase, Warning_

        app = self.pt.platform.apps["svc_metrics"]
        now = app.state.clock.now() if hasattr(app.state, "clock") else None
        wid, cid = str(uuid.uuid4()), (self.uid("case") if case else None)

        async def write():
            async with app.state.db.session() as s, s.begin():
                s.add(Warning_(id=wid, kind="low_satisfaction", dedup_key=wid, scope=scope, period="2026-Q4",
                               title_zh="满意度低于 80%", title_en="Satisfaction below 80%", evidence={},
                               rectification=case, status="open", created_at=now))
                if case:
                    await s.flush()
                    s.add(RectificationCase(id=cid, warning_id=wid, scope=scope, period="2026-Q4",
                                            reason_zh="满意度低于 80%", reason_en="Satisfaction below 80%",
                                            evidence={}, status="opened", opened_at=now, opened_by="system",
                                            history=[]))
        self.pt.run(write())
        return wid, cid


O1_ID = None  # set by the fixture (policy.O1)
REQUEST_BODY = {"item_code": "SH-WX-001", "channel": "app", "description": "authz matrix: 厨房水管漏水",
                "location": {"grid": A1}, "attributes": {"appliance": "plumbing"}}


PASSWORD = "Quartz-Lantern-Orbit-58"  # passes gateway/accounts/passwords.py


def account_body(username: str, role: str = "grid_worker", scope: str = f"grid:{A2}", admin: bool = False) -> dict:
    return {"username": username, "display_name": "授权矩阵账号", "role": role, "scopes": [scope], "admin": admin,
            "password": PASSWORD}


def need_body(**over) -> dict:
    return {"category": "elderly_care", "person_id": P1, "place_code": A1, "latitude": 39.9219,
            "longitude": 116.4436, "description": "authz matrix: 助餐", **over}


def approve_body() -> dict:
    return {"fields": ["data.dibao"], "expires_at": "2027-06-30T00:00:00+08:00"}


# ----------------------------------------------------------------------------------------------- the cells
# A maker builds the call one caller makes: (method, url, request keywords). `oid` replaces the target's id by
# an unknown one for the existence check of a 404.
Make = Callable[[World, Caller, str | None], tuple[str, str, dict[str, Any]]]


@dataclass(frozen=True)
class Cell:
    rule: str
    make: Make
    listed: Callable[[Any], bool] | None = None  # for lists: does the answer hold the target?
    sees: Callable[[Caller], bool] | None = None  # who must find the target in the list


def get(template: str, target: Callable[[World], str] | None = None, **params) -> Make:
    def make(w: World, c: Caller, oid: str | None):
        url = template.format(oid or (target(w) if target else ""))
        return "GET", url, ({"params": params} if params else {})
    return make


def fresh(method: str, template: str, target: Callable[[World], str] | None, body=None, **kw) -> Make:
    """A call on a fresh target (made for this caller); body: dict or fn(world, caller)."""
    def make(w: World, c: Caller, oid: str | None):
        tid = oid or (target(w) if target else "")
        b = body(w, c) if callable(body) else body
        extra = dict(kw)
        if b is not None:
            extra["json"] = b
        return method, template.format(tid), extra
    return make


def ids(key: str) -> Callable[[World], str]:
    return lambda w: w.ids[key]


def items_of(body) -> list:
    return body if isinstance(body, list) else body.get("items", body.get("grants", body.get("entries", [])))


def holds(key: str, field: str = "id") -> Callable[[World, Any], bool]:
    return lambda w, body: w.ids[key] in {str(x.get(field)) for x in items_of(body)}


def item_body(w: World, c: Caller, scope, department) -> dict:
    base = w.call("ops1", "GET", "/services/v1/catalogue/items/SH-WX-001")
    return {**{k: base[k] for k in ItemContent.model_fields}, "code": w.uid("AUTHZ-NEW").upper(),
            "name": f"authz {c.name}", "department": department, "scope": scope}


def item_edit(code_of: Callable[[World], str]) -> Make:
    def make(w: World, c: Caller, oid: str | None):
        code = oid or code_of(w)
        cur = w.call("ops1", "GET", f"/services/v1/catalogue/items/{code_of(w)}")
        return "PUT", f"/services/v1/catalogue/items/{code}", {
            "json": {**{k: cur[k] for k in ItemContent.model_fields}, "version": cur["current_version"]}}
    return make


def transition(w: World, c: Caller, oid: str | None):
    req = w.request_p1(actions=())
    return "POST", f"/services/v1/requests/{oid or req['id']}/transitions", {
        "json": {"action": "accept", "version": req["version"]}}


def offer_call(action: str, accepted: bool = False, body=None) -> Make:
    def make(w: World, c: Caller, oid: str | None):
        offer = w.offer_p1(accepted=accepted)
        kw = {"json": body} if body is not None else {}
        return "POST", f"/matching/v1/offers/{oid or offer['id']}/{action}", kw
    return make


def submit(w: World, c: Caller, oid):
    body = dict(REQUEST_BODY)
    if c.role not in ("resident", "proxy"):
        body["person_id"] = P1
    return "POST", "/services/v1/requests", {"json": body}


def submit_for_p1(w: World, c: Caller, oid):
    return "POST", "/services/v1/requests", {"json": {**REQUEST_BODY, "person_id": P1}}


def open311(w: World, c: Caller, oid):
    return "POST", "/open311/v2/requests.json", {"data": {
        "service_code": "WG-SJ-001", "address_id": A1, "description": "authz matrix: 楼道灯坏了",
        "attribute[event_type]": "facility"}}


def credit(w: World, c: Caller, oid):
    return "POST", "/matching/v1/timebank/credits", {"json": {
        "posting_id": w.uid("authz-credit"), "person_id": P1, "community": XF, "unit": "point", "amount": 1,
        "memo": "authz matrix"}}


def redeem(w: World, c: Caller, oid):
    return "POST", "/matching/v1/timebank/redemptions", {"json": {
        "posting_id": w.uid("authz-redeem"), "account_id": oid or w.ids["account_p1"], "community": XF,
        "amount": 1, "memo": "authz matrix"}}


def posting(w: World, c: Caller, oid):
    return "POST", "/matching/v1/timebank/postings", {"json": {
        "posting_id": w.uid("authz-post"), "unit": "point", "entries": [
            {"account_id": w.ids["account_p1"], "amount": -1}, {"account_id": w.ids["account_p3"], "amount": 1}]}}


def volunteer(w: World, c: Caller, oid):
    pid = w.person_a2()
    return "POST", "/matching/v1/volunteers", {"json": {
        "person_id": pid, "name": "授权矩阵志愿者", "skills": ["elderly_care"], "max_load": 1,
        "latitude": 39.9230, "longitude": 116.4460, "place_code": A2}}


def organization(w: World, c: Caller, oid):
    return "POST", "/matching/v1/organizations", {"json": {
        "name": f"授权矩阵机构 {w.uid('o')}", "uscc": uscc(w), "community": XF}}


def uscc(w: World) -> str:
    from common.validators import make_uscc

    w.n += 1
    return make_uscc("5", "2", "110105", f"MA{w.n:06d}")


def service_body(w: World, c: Caller, oid):
    return "POST", "/matching/v1/services", {"json": {
        "organization_id": w.ids["org_id"], "name": f"authz {w.uid('svc')}", "categories": ["elderly_care"],
        "capacity": {"maximum": 5}, "service_area_radius_m": 3000,
        "location_ids": [demo_id("location", "O1")]}}


def service_status(w: World, c: Caller, oid):
    sid = demo_id("service", "O1")  # O1's home-visit service, in 幸福
    svc = w.call("ops1", "GET", f"/matching/v1/services/{sid}")
    return "POST", f"/matching/v1/services/{oid or sid}/status", {
        "json": {"status": svc["status"], "version": svc.get("version")}}


def warning_ack(w: World, c: Caller, oid):
    wid, _ = w.warning()
    return "POST", f"/metrics/v1/warnings/{oid or wid}/acknowledge", {"json": {"note": "authz matrix"}}


def case_advance(w: World, c: Caller, oid):
    _, cid = w.warning(case=True)
    return "POST", f"/metrics/v1/rectifications/{oid or cid}/advance", {"json": {"status": "in_progress"}}


def grant_action(action: str, state: str, body=None) -> Make:
    def make(w: World, c: Caller, oid: str | None):
        g = w.grant_pending() if state == "pending" else w.grant_approved()
        kw = {"json": body} if body is not None else {}
        return "POST", f"/exchange/v1/grants/{oid or g}/{action}", kw
    return make


def member_action(method: str, suffix: str, body=None) -> Make:
    def make(w: World, c: Caller, oid: str | None):
        code = oid or w.member()
        kw = {"json": body} if body is not None else {}
        return method, f"/exchange/v1/members/{code}{suffix}", kw
    return make


XF_ADMIN = ("community_staff", f"community:{XF}", True)  # a 幸福 community administrator


def acct(method: str, suffix: str = "", kind: tuple = (), body=None) -> Make:
    """A management call on a fresh 幸福 account (a grid worker, or `kind`), with the caller's session."""
    def make(w: World, c: Caller, oid: str | None):
        name = oid or w.account(*kind)
        kw: dict[str, Any] = {"headers": w.auth(c)}
        if body is not None:
            kw["json"] = body
        return method, f"/auth/v1/accounts/{name}{suffix}", kw
    return make


def acct_read(key: str, params: dict | None = None) -> Make:
    def make(w: World, c: Caller, oid: str | None):
        path = "/auth/v1/accounts" if key == "list" else "/auth/v1/accounts/audit" if key == "audit" else \
            f"/auth/v1/accounts/{oid or w.ids[key]}"
        kw: dict[str, Any] = {"headers": w.auth(c)}
        if key == "audit":
            kw["params"] = {"target": w.ids["account_xf"]}
        elif key == "list":
            kw["params"] = {"limit": 200}
        return "GET", path, kw
    return make


def own_patch(w: World, c: Caller, oid: str | None):
    version = 1
    if not c.system:
        version = w.call("admin_ops", "GET", f"/auth/v1/accounts/{c.user}", headers=w.auth(BY_NAME["admin_ops"]))[
            "version"]
    return "PATCH", f"/auth/v1/accounts/{c.user}", {"headers": w.auth(c), "json": {
        "version": version, "display_name": "自己改自己"}}


def create(kind: tuple = ()) -> Make:
    def make(w: World, c: Caller, oid: str | None):
        return "POST", "/auth/v1/accounts", {"headers": w.auth(c), "json": account_body(w.uid("authz-new"), *kind)}
    return make


def as_person(method: str, path: str, fresh: bool = False, **kw) -> Make:
    """A call on one's own session: `fresh`, with a new session of the caller's (one the call may end)."""
    def make(w: World, c: Caller, oid: str | None):
        h = w.headers(c) if c.system else w.session(c, fresh=fresh)["h"]
        return method, path, {"headers": h, **kw}
    return make


def end_session(whose: str) -> Make:
    """DELETE one session: `own` another session of the caller's, `other` a session of another person's."""
    def make(w: World, c: Caller, oid: str | None):
        if oid is None:
            oid = (w.session(c, fresh=True) if whose == "own" and not c.system else w.victim())["session_id"]
        return "DELETE", f"/auth/v1/me/sessions/{oid}", {"headers": w.auth(c)}
    return make


def password_change(w: World, c: Caller, oid: str | None):
    new = f"Kettle-Harbour-{w.uid('pw')}"
    body = {"current_password": w.passwords.get(c.user, DEMO_PASSWORD), "new_password": new}
    if not c.system and RULES["session.own"].decide(c) == OK:
        w.passwords[c.user] = new  # the next sign-ins need it (restored after the matrix)
    return "POST", "/auth/v1/me/password", {"headers": w.auth(c), "json": body}


def enrolling(w: World, c: Caller) -> dict[str, str]:
    """The caller's enrolment credential: an administrator's enrolment ticket, a person's own session."""
    if c.system:
        return w.headers(c)
    w.drop_factor(c)
    from tests.authz.policy import mfa_signed

    return w.enrolment_ticket(c) if mfa_signed(c) else w.session(c)["h"]


def enrol(w: World, c: Caller, oid: str | None):
    return "POST", "/auth/v1/mfa/totp/enrol", {"headers": enrolling(w, c)}


def activate(w: World, c: Caller, oid: str | None):
    h = enrolling(w, c)
    code = "123456"
    if not c.system:
        code = pyotp.TOTP(w.enrol(c, h)).at(w.gw.state.clock.now())
    return "POST", "/auth/v1/mfa/totp/activate", {"headers": h, "json": {"code": code}}


def revoke(w: World, c: Caller, oid: str | None):
    """Anyone revokes a token they hold: a person a fresh session's refresh token, a system its own token."""
    token = w.headers(c)["Authorization"][7:] if c.system else w.session(c, fresh=True)["refresh_token"]
    return "POST", "/auth/v1/revoke", {"headers": {}, "data": {"token": token, "token_type_hint": "refresh_token"}}


def everyone_sees_r1(c: Caller) -> bool:
    from tests.authz.policy import sees_r1
    return sees_r1(c)


CELLS: dict[str, list[Cell]] = {
    # gateway: staff accounts (ADR 0015)
    "POST /auth/v1/accounts": [Cell("account.create.grid_xf", create()),
                               Cell("account.create.admin_xf", create(XF_ADMIN))],
    "GET /auth/v1/accounts": [Cell("account.list", acct_read("list"), lambda w, b: w.ids["account_xf"] in {
        a["username"] for a in b}, lambda c: c.administers(A2))],
    "GET /auth/v1/accounts/audit": [Cell("account.list", acct_read("audit"), lambda w, b: any(
        a["target"] == w.ids["account_xf"] for a in b), lambda c: c.administers(A2))],
    "GET /auth/v1/accounts/{username}": [Cell("account.grid_xf", acct_read("account_xf"))],
    "PATCH /auth/v1/accounts/{username}": [
        Cell("account.grid_xf", acct("PATCH", body={"version": 1, "status": "disabled"})),
        Cell("account.admin_xf", acct("PATCH", kind=XF_ADMIN, body={"version": 1, "status": "disabled"})),
        Cell("account.self", own_patch)],
    "POST /auth/v1/accounts/{username}/unlock": [Cell("account.grid_xf", acct("POST", "/unlock"))],
    "POST /auth/v1/accounts/{username}/reset-mfa": [Cell("account.grid_xf", acct("POST", "/reset-mfa")),
                                                    Cell("account.admin_xf", acct("POST", "/reset-mfa", XF_ADMIN))],
    # gateway: one's own sessions, password, second factor; revocation; userinfo
    "GET /auth/v1/me/sessions": [Cell("session.own", as_person("GET", "/auth/v1/me/sessions"),
                                      lambda w, b: any(s["current"] for s in b), lambda c: True)],
    "DELETE /auth/v1/me/sessions/{session_id}": [Cell("session.own", end_session("own")),
                                                 Cell("session.other", end_session("other"))],
    "POST /auth/v1/sign-out": [Cell("session.own", as_person("POST", "/auth/v1/sign-out", fresh=True))],
    "POST /auth/v1/sign-out-everywhere": [Cell("session.own", as_person("POST", "/auth/v1/sign-out-everywhere",
                                                                        fresh=True))],
    "POST /auth/v1/me/password": [Cell("session.own", password_change)],
    "POST /auth/v1/mfa/totp/enrol": [Cell("mfa.enrol", enrol)],
    "POST /auth/v1/mfa/totp/activate": [Cell("mfa.enrol", activate)],
    "POST /auth/v1/mfa/recovery-codes": [Cell("mfa.recovery", as_person("POST", "/auth/v1/mfa/recovery-codes"))],
    "POST /auth/v1/revoke": [Cell("revoke.public", revoke)],
    "GET /auth/v1/userinfo": [Cell("userinfo", as_person("GET", "/auth/v1/userinfo"))],
    # gateway: the exchange
    "GET /exchange/v1/catalogue": [Cell("public", get("/exchange/v1/catalogue"))],
    "GET /exchange/v1/catalogue/{code}": [Cell("public", get("/exchange/v1/catalogue/{}", lambda w: "gongan.hukou"))],
    "POST /exchange/v1/catalogue/refresh": [Cell("exchange.ops", fresh("POST", "/exchange/v1/catalogue/refresh", None))],
    "GET /exchange/v1/grants": [Cell("exchange.governance", get("/exchange/v1/grants"))],
    "GET /exchange/v1/grants/{grant_id}": [Cell("grant.read", get("/exchange/v1/grants/{}", ids("grant_id")))],
    "POST /exchange/v1/grants": [Cell("grant.apply", fresh("POST", "/exchange/v1/grants", None, lambda w, c: {
        "resource": "renshe.insurance", "purpose": f"authz matrix {w.uid('apply')}"}))],
    "POST /exchange/v1/grants/{grant_id}/check": [Cell("grant.decide", grant_action("check", "pending"))],
    "POST /exchange/v1/grants/{grant_id}/approve": [Cell("grant.decide", grant_action("approve", "pending",
                                                                                      approve_body()))],
    "POST /exchange/v1/grants/{grant_id}/refuse": [Cell("grant.decide", grant_action("refuse", "pending",
                                                                                     {"reason": "不符合用途"}))],
    "POST /exchange/v1/grants/{grant_id}/revoke": [Cell("grant.revoke", grant_action("revoke", "approved",
                                                                                     {"reason": "用途结束"}))],
    "GET /exchange/v1/log": [Cell("exchange.governance", get("/exchange/v1/log"))],
    "GET /exchange/v1/members": [Cell("exchange.members.read", get("/exchange/v1/members"))],
    "POST /exchange/v1/members": [Cell("exchange.ops", fresh("POST", "/exchange/v1/members", None, lambda w, c: {
        "code": w.uid("authz-new"), "name": "授权矩阵成员", "kind": "app", "role": "system", "scopes": []}))],
    "PATCH /exchange/v1/members/{code}": [Cell("exchange.ops", member_action("PATCH", "", {"name": "改名"}))],
    "POST /exchange/v1/members/{code}/revoke": [Cell("exchange.ops", member_action("POST", "/revoke"))],
    "POST /exchange/v1/members/{code}/rotate-secret": [Cell("exchange.ops", member_action("POST", "/rotate-secret"))],
    # svc_matching: the directory (public reads, staff writes)
    "GET /matching/v1/hsds/": [Cell("public", get("/matching/v1/hsds/"))],
    "GET /matching/v1/hsds/organizations": [Cell("public", get("/matching/v1/hsds/organizations"))],
    "GET /matching/v1/hsds/organizations/{org_id}": [Cell("public", get("/matching/v1/hsds/organizations/{}",
                                                                        ids("org_id")))],
    "GET /matching/v1/hsds/services": [Cell("public", get("/matching/v1/hsds/services"))],
    "GET /matching/v1/hsds/services/{service_id}": [Cell("public", get("/matching/v1/hsds/services/{}",
                                                                       ids("service_id")))],
    "GET /matching/v1/hsds/taxonomy_terms": [Cell("public", get("/matching/v1/hsds/taxonomy_terms"))],
    "GET /matching/v1/services/{service_id}": [Cell("public", get("/matching/v1/services/{}", ids("service_id")))],
    "POST /matching/v1/organizations": [Cell("directory.write", organization)],
    "POST /matching/v1/organizations/{org_id}/locations": [Cell("directory.write", fresh(
        "POST", "/matching/v1/organizations/{}/locations", ids("org_id"), lambda w, c: {
            "name": f"服务点 {w.uid('loc')}", "latitude": 39.9215, "longitude": 116.4440, "place_code": A1}))],
    "POST /matching/v1/services": [Cell("directory.write", service_body)],
    "POST /matching/v1/services/{service_id}/status": [Cell("directory.write", service_status)],
    "POST /matching/v1/taxonomy_terms": [Cell("directory.terms", fresh("POST", "/matching/v1/taxonomy_terms", None,
                                                                       lambda w, c: {
        "taxonomy": "category", "code": w.uid("authz_term").replace("-", "_").lower(), "name": "授权矩阵术语"}))],
    # svc_matching: needs, offers, volunteers (personal records of a place)
    "GET /matching/v1/needs": [Cell("need.list", get("/matching/v1/needs", limit=200), holds("need_id"),
                                    lambda c: c.staff_of(A1) or c.ops)],
    "GET /matching/v1/needs/{need_id}": [Cell("need.read", get("/matching/v1/needs/{}", ids("need_id")))],
    "POST /matching/v1/needs": [Cell("need.record", fresh("POST", "/matching/v1/needs", None,
                                                          lambda w, c: need_body(description=f"authz {c.name}")))],
    "POST /matching/v1/needs/{need_id}/candidates": [Cell("need.candidates", fresh(
        "POST", "/matching/v1/needs/{}/candidates", ids("need_id")))],
    "POST /matching/v1/needs/{need_id}/match": [Cell("need.match", fresh(
        "POST", "/matching/v1/needs/{}/match", lambda w: w.need_p1()))],
    "POST /matching/v1/match/batch": [Cell("match.batch", fresh("POST", "/matching/v1/match/batch", None,
                                                                lambda w, c: {"need_ids": [w.need_p1()]}))],
    "GET /matching/v1/offers": [Cell("offer.list", get("/matching/v1/offers", limit=200), holds("offer_id"),
                                     lambda c: c.staff_of(A1) or c.ops)],
    "GET /matching/v1/offers/{offer_id}": [Cell("offer.read", get("/matching/v1/offers/{}", ids("offer_id")))],
    "POST /matching/v1/offers/{offer_id}/accept": [Cell("offer.answer", offer_call("accept"))],
    "POST /matching/v1/offers/{offer_id}/decline": [Cell("offer.answer", offer_call("decline", body={
        "reason": "authz matrix"}))],
    "POST /matching/v1/offers/{offer_id}/complete": [Cell("offer.complete", offer_call("complete", True, {
        "hours": 1, "rating": 5}))],
    "POST /matching/v1/offers/expire": [Cell("scheduler", fresh("POST", "/matching/v1/offers/expire", None))],
    "GET /matching/v1/volunteers/{volunteer_id}": [Cell("volunteer.read", get("/matching/v1/volunteers/{}",
                                                                              ids("volunteer_id")))],
    "POST /matching/v1/volunteers": [Cell("volunteer.register", volunteer)],
    "POST /matching/v1/volunteers/{volunteer_id}/hours_offers": [Cell("volunteer.hours", fresh(
        "POST", "/matching/v1/volunteers/{}/hours_offers", ids("volunteer_id"), lambda w, c: {
            "minutes": 60, "period_start": "2026-11-28", "note": f"authz {c.name}"}))],
    "GET /matching/v1/reports/duplicates": [Cell("reports.xingfu", get("/matching/v1/reports/duplicates",
                                                                       place_code=XF))],
    "GET /matching/v1/reports/gaps": [Cell("reports.xingfu", get("/matching/v1/reports/gaps", place_code=XF))],
    # svc_matching: the person-place feed (ADR 0014)
    "GET /matching/v1/person_places/{person_id}": [Cell("feed.places", get("/matching/v1/person_places/{}",
                                                                           lambda w: P1))],
    "PUT /matching/v1/person_places/{person_id}": [Cell("feed.places", fresh(
        "PUT", "/matching/v1/person_places/{}", lambda w: w.uid("authz-pp"), {"grid_code": A1,
                                                                               "community_code": XF, "version": 1}))],
    "DELETE /matching/v1/person_places/{person_id}": [Cell("feed.places", fresh(
        "DELETE", "/matching/v1/person_places/{}", lambda w: w.uid("authz-pp")))],
    # svc_matching: the time bank
    "GET /matching/v1/timebank/accounts": [Cell("accounts.query", get("/matching/v1/timebank/accounts",
                                                                      person_id=P1), holds("account_p1"),
                                                lambda c: c.own(P1) or c.staff_of(A1) or c.ops)],
    "GET /matching/v1/timebank/accounts/{account_id}": [Cell("account.read", get(
        "/matching/v1/timebank/accounts/{}", ids("account_p1")))],
    "GET /matching/v1/timebank/accounts/{account_id}/statement": [Cell("account.read", get(
        "/matching/v1/timebank/accounts/{}/statement", ids("account_p1")))],
    "POST /matching/v1/timebank/credits": [Cell("ledger.credit", credit)],
    "POST /matching/v1/timebank/postings": [Cell("ledger.posting", posting)],
    "POST /matching/v1/timebank/redemptions": [Cell("ledger.redeem", redeem)],
    # svc_metrics
    "GET /metrics/v1/catalogue": [Cell("metrics.catalogue", get("/metrics/v1/catalogue"))],
    "GET /metrics/v1/targets": [Cell("metrics.catalogue", get("/metrics/v1/targets"))],
    "GET /metrics/v1/dashboard": [Cell("metrics.xingfu", get("/metrics/v1/dashboard", scope=XF))],
    "GET /metrics/v1/report": [Cell("metrics.xingfu", get("/metrics/v1/report", scope=XF))],
    "GET /metrics/v1/kpis": [Cell("metrics.xingfu", get("/metrics/v1/kpis", scope=XF))],
    "GET /metrics/v1/kpis/{code}": [Cell("metrics.xingfu", get("/metrics/v1/kpis/{}", lambda w: "response_time",
                                                               scope=XF))],
    "GET /metrics/v1/warnings": [Cell("metrics.lists", get("/metrics/v1/warnings", scope=XF), holds("warning_id"),
                                      lambda c: c.ops or (metrics_role(c) and sees_xf(c)))],
    "GET /metrics/v1/rectifications": [Cell("metrics.lists", get("/metrics/v1/rectifications", scope=XF),
                                            holds("case_id"), lambda c: c.ops or (metrics_role(c) and sees_xf(c)))],
    "GET /metrics/v1/rectifications/{case_id}": [Cell("case.read", get("/metrics/v1/rectifications/{}",
                                                                       ids("case_id")))],
    "GET /metrics/v1/exchange/calls": [Cell("metrics.ops", get("/metrics/v1/exchange/calls"))],
    "POST /metrics/v1/rebuild": [Cell("metrics.ops", fresh("POST", "/metrics/v1/rebuild", None))],
    "POST /metrics/v1/events": [Cell("metrics.events", fresh("POST", "/metrics/v1/events", None, lambda w, c: {
        "events": [{"event_id": str(uuid.uuid4()), "type": "member.joined", "occurred_at": "2026-11-28T08:00:00+08:00",
                    "source": "authz", "subject": w.uid("authz-member"), "data": {"kind": "app"}}]}))],
    "PUT /metrics/v1/kpis/{code}/targets/{scope}": [Cell("metrics.target", fresh(
        "PUT", "/metrics/v1/kpis/satisfaction_rate/targets/{}", lambda w: XF, {
            "value": 90, "source": "authz matrix"}))],
    "POST /metrics/v1/warnings/scan": [Cell("scheduler", fresh("POST", "/metrics/v1/warnings/scan", None))],
    "POST /metrics/v1/warnings/{warning_id}/acknowledge": [Cell("warning.ack", warning_ack)],
    "POST /metrics/v1/rectifications/{case_id}/advance": [Cell("case.advance", case_advance)],
    # svc_services: Open311 (anonymous public reads of GeoReport v2)
    "GET /open311/v2/discovery.{fmt}": [Cell("public", get("/open311/v2/discovery.json"))],
    "GET /open311/v2/requests.{fmt}": [Cell("public", get("/open311/v2/requests.json"))],
    "GET /open311/v2/requests/{request_id}.{fmt}": [Cell("public", get("/open311/v2/requests/{}.json",
                                                                       ids("request_id")))],
    "GET /open311/v2/services.{fmt}": [Cell("public", get("/open311/v2/services.json"))],
    "GET /open311/v2/services/{service_code}.{fmt}": [Cell("public", get("/open311/v2/services/{}.json",
                                                                         lambda w: "WG-SJ-001"))],
    "GET /open311/v2/tokens/{token}.{fmt}": [Cell("public", get("/open311/v2/tokens/{}.json", ids("open311_token")))],
    "POST /open311/v2/requests.{fmt}": [Cell("open311.submit", open311)],
    # svc_services: the catalogue
    "GET /services/v1/catalogue/items": [Cell("public.users", get("/services/v1/catalogue/items"))],
    "GET /services/v1/catalogue/items/{code}": [Cell("public.users", get("/services/v1/catalogue/items/{}",
                                                                         lambda w: "YL-ZC-001"))],
    "GET /services/v1/catalogue/items/{code}/versions": [Cell("public.users", get(
        "/services/v1/catalogue/items/{}/versions", lambda w: "YL-ZC-001"))],
    "POST /services/v1/catalogue/items": [
        Cell("catalogue.xingfu", fresh("POST", "/services/v1/catalogue/items", None,
                                       lambda w, c: item_body(w, c, XF, "community"))),
        Cell("catalogue.district_minzheng", fresh("POST", "/services/v1/catalogue/items", None,
                                                  lambda w, c: item_body(w, c, None, "minzheng"))),
        Cell("catalogue.district_community", fresh("POST", "/services/v1/catalogue/items", None,
                                                   lambda w, c: item_body(w, c, None, "community")))],
    "PUT /services/v1/catalogue/items/{code}": [
        Cell("catalogue.district_community", item_edit(lambda w: "SH-WX-001")),
        Cell("catalogue.district_minzheng", item_edit(lambda w: "YL-ZC-001")),
        Cell("catalogue.xingfu", item_edit(ids("item_xf")))],
    "DELETE /services/v1/catalogue/items/{code}": [
        Cell("catalogue.district_community", fresh("DELETE", "/services/v1/catalogue/items/{}",
                                                   lambda w: w.item(None, "community"))),
        Cell("catalogue.district_minzheng", fresh("DELETE", "/services/v1/catalogue/items/{}",
                                                  lambda w: w.item(None, "minzheng"))),
        Cell("catalogue.xingfu", fresh("DELETE", "/services/v1/catalogue/items/{}",
                                       lambda w: w.item(XF, "community")))],
    "POST /services/v1/catalogue/items/{code}/activate": [
        Cell("catalogue.district_community", fresh("POST", "/services/v1/catalogue/items/{}/activate",
                                                   lambda w: w.item(None, "community", active=False))),
        Cell("catalogue.district_minzheng", fresh("POST", "/services/v1/catalogue/items/{}/activate",
                                                  lambda w: w.item(None, "minzheng", active=False))),
        Cell("catalogue.xingfu", fresh("POST", "/services/v1/catalogue/items/{}/activate",
                                       lambda w: w.item(XF, "community", active=False)))],
    "GET /services/v1/grids": [Cell("public.all", get("/services/v1/grids"))],
    "PUT /services/v1/grids/{code}": [Cell("grid.write", fresh("PUT", "/services/v1/grids/{}", lambda w: A1,
                                                               lambda w, c: w.ids["grid_a1"]))],
    # svc_services: requests
    "GET /services/v1/requests": [Cell("request.list", get("/services/v1/requests", limit=200),
                                       holds("request_id"), everyone_sees_r1)],
    "GET /services/v1/requests/{request_id}": [
        Cell("request.read", get("/services/v1/requests/{}", ids("request_id"))),
        Cell("request.read.minzheng", get("/services/v1/requests/{}", ids("request_mz")))],
    "GET /services/v1/requests/{request_id}/timeline": [
        Cell("request.read", get("/services/v1/requests/{}/timeline", ids("request_id"))),
        Cell("request.read.minzheng", get("/services/v1/requests/{}/timeline", ids("request_mz")))],
    "GET /services/v1/requests/{request_id}/duplicates": [Cell("request.read", get(
        "/services/v1/requests/{}/duplicates", ids("request_id")))],
    "GET /services/v1/requests/{request_id}/materials": [Cell("request.read", get(
        "/services/v1/requests/{}/materials", ids("request_id")))],
    "GET /services/v1/requests/{request_id}/candidates": [Cell("request.dispatchers", get(
        "/services/v1/requests/{}/candidates", ids("request_id")))],
    "POST /services/v1/requests": [Cell("request.submit.self", submit), Cell("request.submit.P1", submit_for_p1)],
    "POST /services/v1/requests/{request_id}/transitions": [Cell("request.move", transition)],
    "POST /services/v1/requests/{request_id}/materials/fetch": [Cell("request.materials", fresh(
        "POST", "/services/v1/requests/{}/materials/fetch", lambda w: w.request_p1()["id"]))],
    "PUT /services/v1/requests/{request_id}/publication": [Cell("request.publish", fresh(
        "PUT", "/services/v1/requests/{}/publication", lambda w: w.ids["request_r3"], {
            "description": "3号楼前路灯不亮"}))],
    # svc_services: the requester-profile feed (ADR 0007)
    "GET /services/v1/requester_profiles/{person_id}": [Cell("feed.profiles", get(
        "/services/v1/requester_profiles/{}", lambda w: P1))],
    "PUT /services/v1/requester_profiles/{person_id}": [Cell("feed.profiles", fresh(
        "PUT", "/services/v1/requester_profiles/{}", lambda w: w.uid("authz-rp"), {
            "birth_date": "1980-03-12", "groups": [], "version": 1}))],
    "DELETE /services/v1/requester_profiles/{person_id}": [Cell("feed.profiles", fresh(
        "DELETE", "/services/v1/requester_profiles/{}", lambda w: w.uid("authz-rp")))],
}


# the domains' own cells and rules (tests/authz/domains/)
from tests.authz import domains  # noqa: E402  (its modules use the cell makers above)

DOMAINS = domains.load()
DOMAIN_FILL: dict[str, str] = {}
for _module in DOMAINS:
    for _endpoint in getattr(_module, "CELLS", {}):
        assert _endpoint not in CELLS, f"{_endpoint}: cells in test_matrix.py and in {_module.__name__}"
    CELLS.update(getattr(_module, "CELLS", {}))
    for _rule in getattr(_module, "RULES", {}):
        assert _rule not in RULES, f"rule {_rule} defined twice ({_module.__name__})"
    RULES.update(getattr(_module, "RULES", {}))
    DOMAIN_FILL.update(getattr(_module, "FILL", {}))


# ----------------------------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def world(pt, ids):
    global O1_ID
    from tests.authz.policy import O1

    O1_ID = O1
    w = World(pt, dict(ids))
    w.ids["request_r3"] = demo_id("request", "R3")
    req = w.request_p1()  # accepted by 幸福's staff, then dispatched to 民政
    w.ids["request_mz"] = w.call("staff1", "POST", f"/services/v1/requests/{req['id']}/transitions", json={
        "action": "dispatch", "version": req["version"], "assignee": {"kind": "department", "id": "minzheng"}})["id"]
    # O1's home-visit service with room for every offer the cells make (they leave offers pending), so that the
    # engine's first choice for P1's needs stays O1 (provider1), whom the offer rules name
    w.call("ops1", "POST", "/matching/v1/services", json={
        "organization_id": O1, "name": "授权矩阵：幸福家园上门助餐", "categories": ["elderly_care"],
        "capacity": {"maximum": 100000}, "service_area_radius_m": 3000, "location_ids": [demo_id("location", "O1")]})
    # P1's and P3's time-bank accounts (points of 幸福), opened by a credit from 幸福's staff
    for key, pid in (("account_p1", P1), ("account_p3", person_id("P3"))):
        w.call("staff1", "POST", "/matching/v1/timebank/credits", json={
            "posting_id": f"authz-open-{key}", "person_id": pid, "community": XF, "unit": "point", "amount": 50,
            "memo": "authz matrix"})
        accounts = w.call("ops1", "GET", "/matching/v1/timebank/accounts", params={"person_id": pid})
        w.ids[key] = next(a["id"] for a in accounts if a["unit"] == "point")
    w.ids["grant_id"] = next(g["id"] for g in items_of(w.call("ops1", "GET", "/exchange/v1/grants"))
                             if g["owner"] == "dept-minzheng" and g["consumer"] == "svc_services")
    w.ids["item_xf"] = w.item(XF, "community")
    grid = next(g for g in w.call("ops1", "GET", "/services/v1/grids") if g["code"] == A1)
    w.ids["grid_a1"] = {k: grid[k] for k in ("name", "lat", "long")}
    w.ids["warning_id"], w.ids["case_id"] = w.warning(case=True)
    r = w.call("resident1", "POST", "/open311/v2/requests.json", data={
        "service_code": "WG-SJ-001", "address_id": A1, "description": "authz matrix: 路灯", "attribute[event_type]":
        "facility"})
    first = r[0] if isinstance(r, list) else r
    w.ids["open311_token"] = str(first.get("token") or first.get("service_request_id"))
    # the accounts: every administrator signs in (enrolling its TOTP authenticator first, as the seeded demo
    # administrators must); 公安's portal user gets an account; a 幸福 grid worker is the target of reads
    for c in ADMINS:
        w.session(c)
    ops = w.auth(BY_NAME["admin_ops"])
    w.call("admin_ops", "POST", "/auth/v1/accounts", headers=ops, json={
        **account_body("dept_ga", "dept_staff", "dept:gongan"), "display_name": "公安用户"})
    w.passwords["dept_ga"] = PASSWORD
    w.ids["account_xf"] = w.uid("authz-gw")
    w.call("admin_ops", "POST", "/auth/v1/accounts", headers=ops, json=account_body(w.ids["account_xf"]))
    for module in DOMAINS:
        if hasattr(module, "setup"):
            module.setup(w)
    yield w
    w.restore_passwords()


# ----------------------------------------------------------------------------------------------- the tests
def test_every_endpoint_has_cells(pt):
    have = set(endpoints(pt)) - PUBLIC
    assert not (have - set(CELLS)), f"endpoints without cells: {sorted(have - set(CELLS))}"
    assert not (set(CELLS) - have), f"cells for endpoints that no longer exist: {sorted(set(CELLS) - have)}"
    assert all(cell.rule in RULES for cells in CELLS.values() for cell in cells)


def _code(r) -> str | None:
    try:
        return r.json().get("code")
    except (ValueError, AttributeError):
        return None


def _codes(r) -> set:
    """The problem's code and its field errors' codes."""
    try:
        body = r.json()
        return {body.get("code"), *(e.get("code") for e in body.get("errors") or ())}
    except (ValueError, AttributeError):
        return set()


def callers(endpoint: str) -> tuple[Caller, ...]:
    return (*CALLERS, *ADMINS) if endpoint.split(" ", 1)[1].startswith("/auth/") else CALLERS


def check_cell(w: World, endpoint: str, cell: Cell, c: Caller) -> str | None:
    helper = acting.not_an_act(endpoint, c)  # before the endpoint's own rule (tests/authz/acting.py)
    want = DENY if helper else RULES[cell.rule].decide(c)
    w.reuse = want != OK
    method, url, kw = cell.make(w, c, None)
    r = w.pt.request(method, url, **{"headers": w.headers(c), **kw})
    got = r.status_code
    where = f"{endpoint} [{cell.rule}] as {c.name}"
    if got >= 500:
        return f"{where}: {got} {r.text[:200]}"
    if want == OK:
        if not 200 <= got < 300:
            return f"{where}: got {got}, want 2xx ({r.text[:200]})"
        if cell.listed is not None and cell.sees is not None and cell.listed(w, r.json()) != cell.sees(c):
            return f"{where}: the target {'missing from' if cell.sees(c) else 'listed in'} the answer"
        return None
    if str(got) != want:
        return f"{where}: got {got}, want {want} ({r.text[:200]})"
    if not r.headers.get("content-type", "").startswith("application/problem+json") and \
            not endpoint.startswith("POST /open311/"):  # GeoReport v2 answers its own error list
        return f"{where}: the refusal is not problem+json"
    code = (lambda _: "proxy.not_an_act") if helper else RULES[cell.rule].code
    if want == DENY and code is not None and code(c) and code(c) not in _codes(r):
        return f"{where}: refused with {sorted(map(str, _codes(r)))}, want {code(c)}"
    if want == HIDE:  # the same call on an unknown id must answer alike
        method, url, kw = cell.make(w, c, UNKNOWN)
        u = w.pt.request(method, url, **{"headers": w.headers(c), **kw})
        if u.status_code != got or _code(u) != _code(r):
            return f"{where}: a foreign object answers {got} {_code(r)}, an unknown one {u.status_code} {_code(u)}"
    return None


def test_policy_matrix(pt, world):
    problems, cells = [], 0
    for endpoint in endpoints(pt):
        if endpoint in PUBLIC:
            continue
        for cell in CELLS.get(endpoint, []):
            world.cache = {}
            for c in callers(endpoint):
                cells += 1
                p = check_cell(world, endpoint, cell, c)
                if p:
                    problems.append(p)
    print(f"{cells} cells")
    assert not problems, f"{len(problems)} of {cells} cells:\n" + "\n".join(problems)
