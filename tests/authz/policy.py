"""The authorisation policy the matrix (test_matrix.py) checks, written from DESIGN.md ("Identity and
authorisation"), DOMAIN.md (roles, workflows 1, 4, 6, 7), ADR 0013 (calls only through the gateway) and ADR 0014
(svc_matching's scoping), ADR 0015 and gateway/accounts/policy.py (staff accounts, sessions, second factor), never
from what the code answers.

Callers are the demo users (deploy/demo.py) plus member systems calling with their own client-credentials token
(subject = member, as `/auth/v1/token` issues them): the kiosk app, 民政's and 公安's department systems and
svc_residents (the source of the requester-profile and person-place feeds).

The demo district: street 和平 (110105001) → 幸福 (…001: grids A1 …001001, A2 …001002) and 安康 (…002: grid
…002001, …002002). resident1 is P1 (幸福 A1), resident3 is P3 (幸福 A1), proxy1 acts for P3; grid1 works A1, grid3
安康's first grid; staff1 is 幸福's, staff2 安康's; street1 the street's; dept_mz a 民政 user; provider1 the
organisation O1; evaluator1 the district's evaluator. The account endpoints (/auth/v1) have four more callers, the
seeded demo administrators (gateway/accounts/seed.py): admin_xf (幸福), admin_ak (安康), admin_street (和平 street)
and admin_ops (platform); every person calls them with a session of their own (a sign-in; administrators with TOTP).

Each rule is a function of the caller giving what the call must come to: "ok" (2xx), "403" (refused: the caller
may know the thing exists but may not do this) or "404" (hidden: the object lies outside the caller's reach, and
the answer must be the one an unknown id gets).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from deploy.demo import DEMO_USERS, demo_id, person_id

XF, AK, STREET, DISTRICT = "110105001001", "110105001002", "110105001", "110105"
A1, A2, AK1 = XF + "001", XF + "002", AK + "001"
P1, P3, P5 = person_id("P1"), person_id("P3"), person_id("P5")
O1 = demo_id("organization", "O1")
PLACE_STAFF = ("grid_worker", "community_staff", "street_staff")
MANAGERS = ("community_staff", "street_staff")


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    user: str
    member: str
    scopes: tuple[str, ...] = ()
    acting_for: str | None = None
    over: dict = field(default_factory=dict, hash=False, compare=False)  # token overrides (tests/inprocess.py)
    base: str = ""  # the demo user whose token spec this caller starts from
    admin: bool = False  # an administrator (gateway/accounts/policy.py)

    def values(self, kind: str) -> list[str]:
        return [s.split(":", 1)[1] for s in self.scopes if s.startswith(kind + ":")]

    @property
    def person(self) -> str | None:
        return self.acting_for if self.role == "proxy" else next(iter(self.values("person")), None)

    @property
    def places(self) -> list[str]:
        return [v for k in ("district", "street", "community", "grid") for v in self.values(k)]

    @property
    def system(self) -> bool:
        """A member system calling as itself (client credentials): reaches a catalogued resource only under a
        grant (DOMAIN workflow 6, DESIGN "a department only what its grants cover")."""
        return self.user == self.member

    def covers(self, code: str | None) -> bool:
        return bool(code) and any(code.startswith(p) for p in self.places)

    def staff_of(self, code: str, roles=PLACE_STAFF) -> bool:
        """Place staff (of `roles`) whose scopes cover the place code (codes nest by prefix)."""
        return self.role in roles and self.covers(code)

    def own(self, person: str) -> bool:
        """The resident themselves, or the proxy acting for them."""
        return self.role in ("resident", "proxy") and self.person == person

    @property
    def ops(self) -> bool:
        return self.role == "ops"

    @property
    def level(self) -> str | None:
        """community | street | platform for an administrator (gateway/accounts/policy.py), else None."""
        return {"community_staff": "community", "street_staff": "street", "ops": "platform"}.get(self.role) \
            if self.admin else None

    def administers(self, code: str) -> bool:
        """An administrator whose place holds the place code (a platform administrator's holds every place)."""
        return self.level == "platform" or (self.level is not None and self.covers(code))


def _user(name: str) -> Caller:
    u = next(u for u in DEMO_USERS if u["username"] == name)
    return Caller(name, u["role"], name, "portal", tuple(u["scopes"]), u.get("acting_for"), base=name)


def _system(name: str, member: str, role: str, scopes: tuple[str, ...] = ()) -> Caller:
    return Caller(name, role, member, member, scopes,
                  over={"user": member, "member": member, "role": role, "scopes": list(scopes)}, base="system")


CALLERS: tuple[Caller, ...] = (
    *(_user(n) for n in ("resident1", "resident3", "proxy1", "grid1", "grid3", "staff1", "staff2", "street1",
                         "dept_mz", "provider1", "evaluator1", "ops1")),
    # a 公安 user (signed in through the portal): another department than the 民政 one
    Caller("dept_ga", "dept_staff", "dept_ga", "portal", ("dept:gongan",),
           over={"user": "dept_ga", "scopes": ["dept:gongan"]}, base="dept_mz"),
    _system("kiosk", "kiosk", "system"),
    _system("sys_minzheng", "dept-minzheng", "dept_staff", ("dept:minzheng",)),
    _system("sys_gongan", "dept-gongan", "dept_staff", ("dept:gongan",)),
    _system("sys_residents", "svc_residents", "system"),
)


def _admin(name: str, role: str, scopes: tuple[str, ...]) -> Caller:
    return Caller(name, role, name, "portal", scopes, admin=True, base="staff1",
                  over={"user": name, "role": role, "scopes": list(scopes)})


ADMINS: tuple[Caller, ...] = (
    _admin("admin_xf", "community_staff", ("community:" + XF,)),
    _admin("admin_ak", "community_staff", ("community:" + AK,)),
    _admin("admin_street", "street_staff", ("street:" + STREET,)),
    _admin("admin_ops", "ops", ()),
)
BY_NAME = {c.name: c for c in (*CALLERS, *ADMINS)}

OK, DENY, HIDE = "ok", "403", "404"


@dataclass(frozen=True)
class Rule:
    reason: str
    decide: Callable[[Caller], str]
    code: Callable[[Caller], str | None] | None = None  # the problem code a refusal must carry, where stated


def allow(pred: Callable[[Caller], bool], otherwise: Callable[[Caller], str] | str = DENY) -> Callable[[Caller], str]:
    def decide(c: Caller) -> str:
        if pred(c):
            return OK
        return otherwise(c) if callable(otherwise) else otherwise
    return decide


def hidden_unless(sees: Callable[[Caller], bool], *, gate: Callable[[Caller], bool] = lambda c: True):
    """Refused (403) when the caller's role may not use the operation at all (`gate` false), hidden (404) when it
    may but the object is out of its reach, else refused (403: visible, not theirs to change)."""
    return lambda c: DENY if not gate(c) else (DENY if sees(c) else HIDE)


def users(c: Caller) -> bool:
    return not c.system


def no_grant(c: Caller) -> bool:
    """Member systems without a grant for the catalogued resource (none of the demo systems holds one for
    svc_services' or svc_metrics' resources): the gateway refuses them (ADR 0013, DOMAIN workflow 6)."""
    return c.system


def members(c: Caller) -> bool:
    """Who takes part in the exchange's governance (gateway: members and the staff who act for their unit)."""
    return c.role in ("system", "dept_staff", "community_staff", "street_staff", "ops")


# ------------------------------------------------------------------------------------------------ svc_services
def sees_r1(c: Caller) -> bool:  # R1: P1's request in grid A1 of 幸福, accepted, assigned to no one
    return c.own(P1) or c.staff_of(A1) or c.ops


REQUEST_ROLES = ("resident", "proxy", *PLACE_STAFF, "dept_staff", "ops")


def metrics_reader(scope: str):
    """svc_metrics: evaluators, place staff over the scope, ops; departments' staff only for scopes they hold
    (none: their scope is a department, not a place)."""
    return lambda c: c.ops or (c.role in ("evaluator", *PLACE_STAFF) and not c.system and c.covers(scope))


def metrics_role(c: Caller) -> bool:
    return c.role in ("evaluator", *PLACE_STAFF, "dept_staff", "ops")


def sees_xf(c: Caller) -> bool:
    """A 幸福 aggregate (a warning, a case): whoever's places cover 幸福 or lie within it."""
    return c.covers(XF) or any(p.startswith(XF) for p in c.places)


def _admin_code(c: Caller) -> str | None:
    return None if c.level else "account.not_admin"


def mfa_roles() -> list[str]:
    """The roles besides administrators that sign in with a second factor (the platform's settings)."""
    from gateway.settings import GatewaySettings

    return list(GatewaySettings().mfa_required_roles)


def mfa_signed(c: Caller) -> bool:
    """This person's sign-in needs (and its session carries) a second factor (gateway/accounts/mfa.py)."""
    return c.admin or c.role in mfa_roles()


RULES: dict[str, Rule] = {
    # everyone signed in
    "public": Rule("public to every signed-in caller: the catalogues, the resource directory (社区资源清单) and the "
                   "exchange catalogue are what residents and members choose from (DOMAIN entities, workflow 4, 6)",
                   lambda c: OK),
    "public.users": Rule("the service catalogue and grids are public to users; a member system reads "
                         "services.catalogue through the exchange under a grant (DOMAIN workflow 6)",
                         allow(users)),
    # svc_services: requests
    "request.list": Rule("anyone who may hold requests lists them, filtered to their own (DESIGN BOLA): R1 only to "
                         "P1, A1's and 幸福's staff, the street, ops; evaluators read aggregates only; member "
                         "systems need a services.requests grant",
                         allow(lambda c: users(c) and c.role not in ("evaluator",))),
    "request.read": Rule("a request is seen by its requester (or their proxy), place staff of its grid and above, "
                         "the department or provider it is assigned to, ops; others get 404 as for an unknown id "
                         "(DESIGN BOLA); member systems need a services.requests grant (403 at the gateway)",
                         allow(sees_r1, lambda c: DENY if no_grant(c) else HIDE)),
    "request.read.minzheng": Rule("a request of P1 dispatched to 民政 (派单 to a department): as request.read, "
                                  "and 民政's staff; 公安's staff 404 (DESIGN: a department only what concerns it)",
                                  allow(lambda c: sees_r1(c) or (users(c) and c.role == "dept_staff"
                                                                 and "minzheng" in c.values("dept")),
                                        lambda c: DENY if no_grant(c) else HIDE)),
    "request.dispatchers": Rule("dispatch candidates are for those who dispatch (派单: place staff of the grid and "
                                "above, ops); the requester sees the request but not this (DOMAIN workflow 1)",
                                allow(lambda c: c.staff_of(A1) or c.ops,
                                      lambda c: DENY if no_grant(c) or sees_r1(c) else HIDE)),
    "request.move": Rule("a request is accepted/moved by place staff of its grid and above and ops (受理、派单, "
                         "小事网格办); its requester sees but may not accept it; others: 404",
                         allow(lambda c: c.staff_of(A1) or c.ops,
                               lambda c: DENY if no_grant(c) or sees_r1(c) else HIDE)),
    "request.materials": Rule("materials are fetched from departments (once-only, DOMAIN workflow 5) by the staff "
                              "handling the request (place staff of its grid and above, ops); the requester sees "
                              "but does not fetch",
                              allow(lambda c: c.staff_of(A1) or c.ops,
                                    lambda c: DENY if no_grant(c) or sees_r1(c) else HIDE)),
    "request.publish": Rule("publishing a description on the public feed is decided by community or street staff "
                            "of the request's place, and ops (issue 23 finding 6: by staff)",
                            allow(lambda c: c.staff_of(A1, MANAGERS) or c.ops,
                                  lambda c: DENY if (no_grant(c) or c.role not in (*MANAGERS, "ops")) else HIDE)),
    "request.submit.P1": Rule("a request for P1 in A1: P1 themselves, place staff covering A1, a department "
                              "counter, ops; not another resident, a proxy for someone else, staff elsewhere, a "
                              "provider, an evaluator (DOMAIN roles, workflow 1)",
                              allow(lambda c: users(c) and (c.own(P1) or c.staff_of(A1) or c.role in
                                                            ("dept_staff", "ops")))),
    "request.submit.self": Rule("residents and proxies file for themselves / their person (代办, the record shows "
                                "who acted); staff of A1 and above, departments, ops too",
                                allow(lambda c: users(c) and (c.role in ("resident", "proxy") or c.staff_of(A1)
                                                              or c.role in ("dept_staff", "ops")))),
    "open311.submit": Rule("Open311 (GeoReport v2) is the submission door for users as request.submit.self and "
                           "for member systems (kiosks, sensors, department systems: DOMAIN channels kiosk / IoT / "
                           "API), which read requests only under a grant", allow(
                               lambda c: c.system or c.role in ("resident", "proxy", "dept_staff", "ops")
                               or c.staff_of(A1))),
    "grid.write": Rule("a grid is registered by community or street staff over it, and ops (DOMAIN hierarchy)",
                       allow(lambda c: c.staff_of(A1, MANAGERS) or c.ops)),
    # svc_services: catalogue (issue 23 finding 3: writes belong to the item's owner and the levels above it)
    "catalogue.district_community": Rule("a district-wide item of no department (SH-WX-001, 一键呼叫): above every "
                                         "community and street: ops only", allow(lambda c: c.ops)),
    "catalogue.district_minzheng": Rule("a district-wide item owned by 民政: 民政's staff and ops; 民政's member "
                                        "system only under a services.catalogue grant (none held: 403 at the "
                                        "gateway, DOMAIN workflow 6)",
                                        allow(lambda c: c.ops or (users(c) and c.role == "dept_staff"
                                                                  and "minzheng" in c.values("dept")))),
    "catalogue.xingfu": Rule("an item offered in 幸福 only: 幸福's and the street's staff, ops; not 安康's, not a "
                             "grid worker, not a department that does not own it",
                             allow(lambda c: c.staff_of(XF, MANAGERS) or c.ops)),
    "feed.profiles": Rule("the requester-profile replica is written and read only by its source (svc_residents' "
                          "member) and ops (ADR 0007, 0014)", allow(lambda c: c.ops or c.member == "svc_residents")),
    # svc_matching (svc_matching/access.py, ADR 0014)
    "feed.places": Rule("the person-place replica: only its source (svc_residents' member) and ops (ADR 0014)",
                        allow(lambda c: c.ops or c.member == "svc_residents")),
    "need.list": Rule("the needs list is run by place staff (listing their places only) and ops; departments, "
                      "member systems, evaluators, providers, residents: 403 (ADR 0014, access.py)",
                      allow(lambda c: c.role in (*PLACE_STAFF, "ops"))),
    "need.read": Rule("P1's need in A1: P1 (or their proxy), place staff covering A1, the provider it was offered "
                      "to, ops; everyone else 404 as for an unknown id (issue 23 finding 9)",
                      allow(lambda c: c.own(P1) or c.staff_of(A1) or c.ops
                            or (c.role == "provider" and O1 in c.values("provider")), HIDE)),
    "need.record": Rule("needs are recorded by place staff within their places and ops (DOMAIN workflow 4)",
                        allow(lambda c: c.staff_of(A1) or c.ops)),
    "need.candidates": Rule("candidates for P1's need: place staff covering A1, ops; a role that runs no needs "
                            "list 403; staff elsewhere 404", allow(lambda c: c.staff_of(A1) or c.ops,
                                                                  lambda c: HIDE if c.role in PLACE_STAFF else DENY)),
    "need.match": Rule("matching and dispatching (派单) a need: community and street staff over its place, ops; "
                       "no department or member system (issue 23 finding 4)",
                       allow(lambda c: c.staff_of(A1, MANAGERS) or c.ops,
                             lambda c: HIDE if c.role in MANAGERS else DENY)),
    "offer.list": Rule("offers are listed by community and street staff (their places) and ops",
                       allow(lambda c: c.role in (*MANAGERS, "ops"))),
    "offer.read": Rule("an offer for P1's need: the matching desk over A1 (community and street staff: offers "
                       "are theirs, not the grid's, as the offers list is), the provider it is offered to, ops; "
                       "else 404", allow(lambda c: c.staff_of(A1, MANAGERS) or c.ops
                                         or (c.role == "provider" and O1 in c.values("provider")), HIDE)),
    "offer.answer": Rule("an offer is accepted or declined by whom it is offered to (provider O1) or staff over its "
                         "place, ops; else 404",
                         allow(lambda c: c.staff_of(A1, MANAGERS) or c.ops
                               or (c.role == "provider" and O1 in c.values("provider")), HIDE)),
    "offer.complete": Rule("completion is confirmed by community staff of the place (and the street, ops); the "
                           "provider sees the offer but does not confirm its own work",
                           allow(lambda c: c.staff_of(A1, MANAGERS) or c.ops,
                                 lambda c: DENY if c.role == "provider" else HIDE)),
    "match.batch": Rule("batch matching of a place's needs: community and street staff, ops (issue 23 finding 4)",
                        allow(lambda c: c.role in (*MANAGERS, "ops"))),
    "scheduler": Rule("scheduled jobs (offer expiry, warning scan) are run by ops or a member system (a scheduler)",
                      allow(lambda c: c.ops or c.role == "system")),
    "directory.write": Rule("幸福's part of the resource directory (社区资源清单) is published by 幸福's and the "
                            "street's staff, by departments (DOMAIN workflow 4: they push resources down) and ops",
                            allow(lambda c: c.staff_of(XF, MANAGERS) or c.role in ("dept_staff", "ops"))),
    "directory.terms": Rule("the directory's taxonomy is the district's: community, street and department staff "
                            "and ops add terms", allow(lambda c: c.role in (*MANAGERS, "dept_staff", "ops"))),
    "reports.xingfu": Rule("gap and duplicate reports (aggregates) of 幸福: its and the street's staff, departments "
                           "(who publish resources), evaluators, ops",
                           allow(lambda c: c.staff_of(XF, MANAGERS) or c.ops or c.role in ("dept_staff", "evaluator"))),
    "volunteer.read": Rule("P5's volunteer record (幸福 A2): the volunteer, staff covering A2, ops; else 404 (it "
                           "holds a name and a home position)",
                           allow(lambda c: c.own(P5) or c.staff_of(A2) or c.ops, HIDE)),
    "volunteer.hours": Rule("hours are pledged by the volunteer, community or street staff over their place, ops; "
                            "those who cannot see the volunteer get 404",
                            allow(lambda c: c.own(P5) or c.staff_of(A2, MANAGERS) or c.ops,
                                  lambda c: DENY if c.staff_of(A2) else HIDE)),
    "volunteer.register": Rule("volunteers are registered by community or street staff within their places, ops",
                               allow(lambda c: c.staff_of(A2, MANAGERS) or c.ops)),
    "accounts.query": Rule("the accounts query (person P1): the person or their proxy, staff (answered their "
                           "places only: [] elsewhere), ops; a resident asking for another is 403 (ADR 0014)",
                           allow(lambda c: c.own(P1) or c.role in (*PLACE_STAFF, "ops"))),
    "account.read": Rule("P1's time-bank account: P1, staff covering where P1 lives (A1), ops; else 404 (issue 23 "
                         "finding 2)", allow(lambda c: c.own(P1) or c.staff_of(A1) or c.ops, HIDE)),
    "ledger.credit": Rule("credits to a person of 幸福: community and street staff covering them, ops (ADR 0014); "
                          "staff of another community may not issue 幸福's points (403)",
                          allow(lambda c: c.staff_of(A1, MANAGERS) or c.ops)),
    "ledger.posting": Rule("free double-entry postings between accounts: street staff and ops only",
                           allow(lambda c: c.role in ("street_staff", "ops"))),
    "ledger.redeem": Rule("redeeming P1's points: P1 (or proxy), community/street staff covering P1, ops; the "
                          "account is hidden from whoever cannot see it (issue 23 finding 2)",
                          allow(lambda c: c.own(P1) or c.staff_of(A1, MANAGERS) or c.ops,
                                lambda c: HIDE if c.role in ("resident", "proxy", *MANAGERS) else DENY)),
    # svc_metrics
    "public.all": Rule("the grids (codes, names, centres) are public to every signed-in caller and member system",
                       lambda c: OK),
    "metrics.xingfu": Rule("indicators of 幸福: evaluators, staff over 幸福 (the street above it), ops; a grid "
                           "worker's scope is one grid; departments and member systems read no places' indicators",
                           allow(metrics_reader(XF))),
    "metrics.catalogue": Rule("the indicator catalogue and targets (no personal data): every metrics reader "
                              "(evaluators, place and department staff or their systems, ops; DOMAIN roles); not "
                              "residents, providers, app systems", allow(metrics_role)),
    "metrics.lists": Rule("warnings and rectification cases asked for 幸福: every metrics reader, the list filtered "
                          "to what they see (幸福's warning to 幸福's staff and grid workers, the street, "
                          "evaluators, ops)", allow(metrics_role)),
    "metrics.ops": Rule("exchange call statistics and event rebuilds: ops only (DOMAIN roles: ops runs the platform)",
                        allow(lambda c: c.ops)),
    "metrics.events": Rule("events come from the services' relays (straight, ADR 0013) or ops; metrics.events is "
                           "not shared on the exchange, so no member system posts through the gateway",
                           allow(lambda c: c.ops)),
    "metrics.target": Rule("a KPI target for 幸福 is set by the street (over it) and ops", allow(
        lambda c: c.ops or c.staff_of(XF, ("street_staff",)))),
    "warning.ack": Rule("幸福's warning is acknowledged by 幸福's or the street's staff, ops; other community "
                        "staff get 404 for another place's; roles that acknowledge nothing 403",
                        allow(lambda c: c.staff_of(XF, MANAGERS) or c.ops,
                              lambda c: HIDE if c.role in MANAGERS else DENY)),
    "case.read": Rule("幸福's rectification case (整改): staff of 幸福 or of a grid in it, the street, the "
                      "district's evaluator, ops; other metrics readers 404, as for an unknown case",
                      allow(lambda c: c.ops or (metrics_role(c) and sees_xf(c)),
                            lambda c: HIDE if metrics_role(c) else DENY)),
    "case.advance": Rule("幸福's case is moved by 幸福's or the street's staff only (the community rectifies; ops "
                         "runs the platform, not the case); a reader who sees it 403, one who cannot 404",
                         allow(lambda c: c.staff_of(XF, MANAGERS),
                               lambda c: DENY if c.ops or (metrics_role(c) and sees_xf(c))
                               else HIDE if metrics_role(c) else DENY)),
    # gateway: exchange
    "exchange.ops": Rule("members are created, changed, revoked and re-keyed by ops only; the catalogue refreshed "
                         "by ops", allow(lambda c: c.ops)),
    "exchange.members.read": Rule("the member register: ops and evaluators (departments connected, DOMAIN KPIs)",
                                  allow(lambda c: c.role in ("ops", "evaluator"))),
    "exchange.governance": Rule("grants and the message log are read (filtered to one's own member) by members "
                                "and the staff who act for their unit, ops", allow(members)),
    "grant.read": Rule("a grant (svc_services ← 民政) is seen by its owner and consumer members and ops; another "
                       "department's system gets 404", allow(lambda c: c.ops or c.member in ("dept-minzheng",
                                                                                             "svc_services"),
                                                             lambda c: HIDE if members(c) else DENY)),
    "grant.apply": Rule("members apply for a resource with a purpose (DOMAIN workflow 6)", allow(members)),
    "grant.decide": Rule("a pending application to 民政's resource is checked, approved or refused by 民政 (the "
                         "owner) only; the consumer and ops are told 403, other members 404",
                         allow(lambda c: c.member == "dept-minzheng",
                               lambda c: DENY if c.ops or c.member == "kiosk" or not members(c) else HIDE)),
    "grant.revoke": Rule("a grant is revoked by its owner, its consumer or ops; other members 404",
                         allow(lambda c: c.ops or c.member in ("dept-minzheng", "kiosk"),
                               lambda c: HIDE if members(c) else DENY)),
    # gateway: staff accounts (ADR 0015, gateway/accounts/policy.py; the administrator is read from the database)
    "account.grid_xf": Rule("a 幸福 grid worker's account is read, changed, disabled, unlocked and its second "
                            "factor reset by the administrators whose place holds it (幸福's, the street's, the "
                            "platform's); 安康's administrator 404 as for an unknown account (its existence does not "
                            "leak); whoever is no administrator 403 account.not_admin (accounts/policy.py)",
                            allow(lambda c: c.administers(A2),
                                  lambda c: HIDE if c.level else DENY), _admin_code),
    "account.admin_xf": Rule("a 幸福 community administrator is managed only from above its role: the street's and "
                             "the platform's administrators; 幸福's own administrator 403 account.above_scope (inside "
                             "its place, not below it), 安康's 404, non-administrators 403 account.not_admin",
                             allow(lambda c: c.level in ("street", "platform"),
                                   lambda c: DENY if c.administers(XF) else HIDE if c.level else DENY),
                             lambda c: "account.above_scope" if c.level else "account.not_admin"),
    "account.self": Rule("nobody changes their own role, scopes, admin flag or status: an administrator on its own "
                         "account 403 account.above_scope, anyone else 403 account.not_admin (accounts/policy.py)",
                         lambda c: DENY, lambda c: "account.above_scope" if c.level else "account.not_admin"),
    "account.create.grid_xf": Rule("a 幸福 grid worker is created by 幸福's, the street's and the platform's "
                                   "administrators; 安康's 403 account.scope_outside (a create hides nothing); "
                                   "non-administrators 403 account.not_admin",
                                   allow(lambda c: c.administers(A2)),
                                   lambda c: "account.scope_outside" if c.level else "account.not_admin"),
    "account.create.admin_xf": Rule("a 幸福 community administrator is created by the street's and the platform's "
                                    "administrators only: a community administrator may not give the admin flag "
                                    "(403 account.role_not_allowed), non-administrators 403 account.not_admin",
                                    allow(lambda c: c.level in ("street", "platform")),
                                    lambda c: "account.role_not_allowed" if c.level else "account.not_admin"),
    "account.list": Rule("administrators list the accounts and read the account audit of their place (the platform "
                         "administrator everything); anyone else 403 account.not_admin (ADR 0015)",
                         allow(lambda c: c.level is not None), _admin_code),
    # gateway: one's own sessions, password and second factor (ADR 0015, gateway/accounts/router.py)
    "session.own": Rule("a person's own sessions (list, sign out, sign out everywhere, end one, change the "
                        "password): every signed-in person, on their own only; a member system's client-credentials "
                        "token is no person's session: 403 session.required", allow(users),
                        lambda c: "session.required"),
    "session.other": Rule("another person's session is no caller's to end: 404 session.not_found as for an unknown "
                          "id; a member system's token 403 session.required", lambda c: HIDE if users(c) else DENY,
                          lambda c: "session.not_found" if users(c) else "session.required"),
    "mfa.enrol": Rule("each person enrols and activates TOTP for their own account only: an administrator with the "
                      "enrolment ticket its sign-in gave, anyone else with their own session; a member system 403 "
                      "session.required (ADR 0015)", allow(users), lambda c: "session.required"),
    "mfa.recovery": Rule("new recovery codes only from a session signed in with the second factor (administrators, "
                         "ONENET_MFA_REQUIRED_ROLES): other people's sessions 403 mfa.session_required, member "
                         "systems 403 session.required",
                         allow(lambda c: users(c) and mfa_signed(c)),
                         lambda c: "mfa.session_required" if users(c) else "session.required"),
    "revoke.public": Rule("token revocation is public (RFC 7009 §2.2: 200 whatever the token; ADR 0015)",
                          lambda c: OK),
    "userinfo": Rule("userinfo (OpenID Connect) answers every signed-in caller about its own token, member "
                     "systems included (ADR 0015)", lambda c: OK),
}
