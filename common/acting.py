"""What a helper (代办员) may do for the person it acts for: the one vocabulary of acting actions and the one check.

A helper's session acts under a proxy authorisation (gateway/accounts/proxies.py); its access tokens carry
`acting_for` (the person) and `acting_actions` (what the authorisation allows). The gateway validates a new
authorisation against `ACTIONS` (a group name such as `requests` stands for all of its actions); each service
checks, where the data is, that the act a helper asks for is one of them:

- a route declares its act: `@router.post(..., dependencies=[acts("deliberation.vote")])`, or
  `acts(lambda body: ...)` when the act depends on the body (a transition's `action`);
- a handler reached without FastAPI's dependencies (common.direct_routes) calls `check(principal, action)` itself;
  its route declares the act with `checked_by_handler("requests.submit")`;
- a POST that only reads (a search) declares `reads_only()`.

Every other write is refused to a helper acting for a person: each service app (common.app) runs
`undeclared_writes` before any route's own dependencies, which refuses a POST, PUT, PATCH or DELETE on a route that
declares no act with a 403 `proxy.not_an_act` (audited alike), so a new write route reaches the helpers only once
it names what it does for the person. Reads stay governed by each service's person rules.

A caller that acts for nobody (a resident, staff, a helper's own session) passes untouched. A token acting for a
person without `acting_actions` is refused every act (the gateway always writes the claim). A refusal is a 403
`proxy.action_not_allowed` naming the action, and a line of the `onenet.audit` log (who, for whom, which
authorisation, which act, method and path); the gateway's message log also holds the refused call.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import Depends, Request

from common.auth import Principal, get_principal
from common.errors import Problem

# action → (zh, en); the group is the part before the dot
ACTIONS: dict[str, tuple[str, str]] = {
    "requests.submit": ("提交办事申请（含补交材料、照片）", "submit a request (its materials and photos too)"),
    "requests.rate": ("评价办结的申请", "rate a resolved request"),
    "requests.reopen": ("申请重办", "reopen a resolved request"),
    "requests.close": ("确认办结", "close a resolved request"),
    "requests.cancel": ("撤回申请", "cancel a request"),
    "deliberation.propose": ("提出或撤回议题", "propose or withdraw a topic"),
    "deliberation.cosign": ("联署议题", "co-sign a proposal"),
    "deliberation.comment": ("发表议事意见", "comment on a topic"),
    "deliberation.vote": ("投票表决", "cast a ballot"),
    "notices.object": ("对公示提出异议", "object to a public notice"),
    "surveys.respond": ("填写问卷", "answer a survey"),
    "bookings.book": ("预约、改约、取消场地", "book, reschedule or cancel a slot"),
    "bookings.sign_up": ("报名或取消报名活动", "sign up for an activity or cancel it"),
    "notifications.inbox": ("代收通知（查看、标为已读、消息设置）", "the person's inbox: read, mark read, settings"),
    "profile.contact": ("修改手机号、首选渠道和无障碍需求", "change the phone, preferred channel and accessibility needs"),
    "profile.tags": ("申报或撤回本人标签", "declare or withdraw a self-declared tag"),
    "profile.consents": ("记录授权同意", "record a consent"),
    "timebank.redeem": ("兑换时间银行积分", "redeem time-bank points"),
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GROUPS: dict[str, tuple[str, ...]] = {}
for _action in ACTIONS:
    GROUPS.setdefault(_action.partition(".")[0], ())
    GROUPS[_action.partition(".")[0]] += (_action,)

audit_log = logging.getLogger("onenet.audit")


def known(name: str) -> bool:
    """An action or a group name."""
    return name in ACTIONS or name in GROUPS


def expand(names: Iterable[str]) -> set[str]:
    """The actions the given action and group names allow (unknown names allow nothing)."""
    out: set[str] = set()
    for name in names:
        if name in ACTIONS:
            out.add(name)
        else:
            out.update(GROUPS.get(name, ()))
    return out


def acting(principal: Principal) -> bool:
    return principal.role == "proxy" and principal.acting_for is not None


def allows(principal: Principal, action: str) -> bool:
    if not acting(principal):
        return True
    return action in expand(principal.claims.get("acting_actions") or ())


def _refuse(principal: Principal, action: str | None, request: Request | None, problem: Problem) -> Problem:
    audit_log.warning("proxy act refused", extra={
        "audit": "proxy.action_refused", "actor": principal.user, "actor_member": principal.member,
        "acting_for": principal.acting_for, "proxy_authorisation": principal.claims.get("proxy_authorisation"),
        "action": action, "allowed": sorted(expand(principal.claims.get("acting_actions") or ())),
        "method": request.method if request is not None else None,
        "path": request.url.path if request is not None else None})
    return problem


def check(principal: Principal, action: str, request: Request | None = None) -> None:
    """Refuse (403, audited) a helper's act for the person that its authorisation does not allow."""
    if allows(principal, action):
        return
    zh, en = ACTIONS.get(action, (action, action))
    raise _refuse(principal, action, request, Problem(
        403, "proxy.action_not_allowed",
        (f"代办授权不包括此事项：{zh}（{action}）", f"The proxy authorisation does not allow: {en} ({action})"),
        extra={"action": action}))


def declares_act(route: Any) -> bool:
    """The route names its act: an `acts(...)` among its dependencies (found once per route)."""
    found = getattr(route, "_declares_act", None)
    if found is None:
        def walk(dependant) -> bool:
            return any(hasattr(d.call, "acting_action") or walk(d) for d in dependant.dependencies)

        dependant = getattr(route, "dependant", None)
        found = route._declares_act = dependant is not None and walk(dependant)
    return found


async def undeclared_writes(request: Request) -> None:
    """Every service route's first dependency (common.app): a helper acting for a person is refused a write on a
    route that declares no act (403 `proxy.not_an_act`, audited). A missing or bad token is left to the route's
    own dependencies to answer."""
    if request.method not in WRITE_METHODS or "authorization" not in request.headers:
        return
    route = request.scope.get("route")
    if route is None or declares_act(route):
        return
    try:
        principal = await get_principal(request)
    except Problem:
        return
    if acting(principal):
        raise _refuse(principal, None, request, Problem(
            403, "proxy.not_an_act", ("代办员不能代为办理此操作：它不是代办授权可以包括的事项",
                                      "A helper may not do this for the person: no proxy authorisation covers it")))


def acts(action: str | Callable[[Any], str | None]):
    """A route's act, for `dependencies=[...]`: a name from `ACTIONS`, or a function of the JSON body giving one
    (None: no acting act, the service's own rules decide, as for a staff-only transition)."""
    if isinstance(action, str) and action not in ACTIONS:
        raise ValueError(f"unknown acting action {action!r}")

    async def _acts(request: Request, principal: Principal = Depends(get_principal)) -> None:
        if not acting(principal):
            return
        name = action
        if callable(action):
            try:
                body = await request.json()
            except ValueError:
                return  # FastAPI answers the malformed body
            name = action(body if isinstance(body, dict) else {})
        if name is not None:
            check(principal, name, request)

    _acts.acting_action = action  # what the route declares (tests and docs list it)
    return Depends(_acts)


def checked_by_handler(action: str):
    """A route whose handler checks the act itself with `check` (every submission path goes through
    svc_services.requests.intake.submit_request, every inbox endpoint through the inbox rule): it declares the act
    without checking it twice, and without asking for a bearer token (Open311 callers send an api_key)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown acting action {action!r}")

    async def _declared() -> None:
        return None

    _declared.acting_action = action
    return Depends(_declared)


def reads_only():
    """A POST that changes nothing (a search with its terms in the body): not a write to refuse a helper; the
    service's person rules decide what it sees."""

    async def _reads() -> None:
        return None

    _reads.acting_action = None
    return Depends(_reads)


def from_field(field: str, group: str) -> Callable[[Any], str | None]:
    """`acts(from_field("action", "requests"))`: the body's `action` as `requests.<action>` when that is an
    acting action, else None."""

    def _pick(body: dict) -> str | None:
        value = body.get(field)
        name = f"{group}.{value}" if isinstance(value, str) else None
        return name if name in ACTIONS else None

    return _pick
