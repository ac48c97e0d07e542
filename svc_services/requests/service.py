"""Rules for requests (诉求 / 工单) beyond intake: moving a request through the lifecycle and reading requests."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import Clock
from common.errors import Problem, invalid
from common.ids import new_id
from common.outbox import record_event
from svc_services.base import OutboxEvent
from svc_services.catalogue.models import CatalogueItemVersion
from svc_services.codes import ESCALATION_LEVELS
from svc_services.requests.access import UNSEEN, can_see, may_act, visibility_clause
from svc_services.requests.lifecycle import ACTION_ZH, ACTIONS, EVENT, MOVES, OWNER, STATE_ZH, TRANSITIONS, allowed_actions
from svc_services.notices.feed import record_notice
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.requests.payloads import event_data
from svc_services.requests.schemas import TransitionIn
from svc_services.settings import ServicesSettings
from svc_services.emergency import feed as emergency_feed
from svc_services.sla.calendar import WorkCalendar


# ---------------------------------------------------------------------------------------------- lifecycle
def _not_allowed(req: ServiceRequest, action: str, principal: Principal, status: int = 409) -> Problem:
    allowed = [a for a in allowed_actions(req.state, principal.role) if may_act(principal, req, a)]
    names = "、".join(ACTION_ZH[a] for a in allowed) or "无"
    return Problem(status, "transition.not_allowed",
                   (f"当前状态（{STATE_ZH[req.state]}）下不能执行“{ACTION_ZH.get(action, action)}”，可执行：{names}",
                    f"'{action}' is not allowed in state {req.state}; allowed: {', '.join(allowed) or 'none'}"),
                   extra={"state": req.state, "allowed_actions": allowed})


def next_level(level: str) -> str | None:
    i = ESCALATION_LEVELS.index(level)
    return ESCALATION_LEVELS[i + 1] if i + 1 < len(ESCALATION_LEVELS) else None


async def apply(session: AsyncSession, req: ServiceRequest, principal: Principal, action: str, *,
                note: str | None, expected_version: int, changes: dict[str, Any], clock: Clock,
                data: dict[str, Any] | None = None, stale_status: int = 409) -> ServiceRequest:
    """Move `req` by `action` with one atomic compare-and-set on its version; append the timeline entry and
    the outbox event in the same transaction. Callers have already checked the table and the rules."""
    rule = MOVES[(req.state, action)]  # the callers' table, or a request's topic's moves (lifecycle.TOPIC_MOVES)
    now = clock.now()
    from_state = req.state
    res = await session.execute(
        update(ServiceRequest)
        .where(ServiceRequest.id == req.id, ServiceRequest.version == expected_version,
               ServiceRequest.state == from_state)
        .values(**changes, state=rule.to, version=ServiceRequest.version + 1, updated_at=now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise _stale(stale_status)
    await session.refresh(req)
    acting_for = principal.acting_for if principal.role == "proxy" else None
    session.add(TimelineEntry(id=new_id(), request_id=req.id, seq=req.version, action=action, from_state=from_state,
                              to_state=req.state, actor=principal.caller, role=principal.role,
                              acting_for=acting_for, note=note, data=data or {}, occurred_at=now))
    record_event(session, OutboxEvent, f"request.{EVENT[action]}", subject=req.id, community=req.community,
                 grid=req.grid, data=event_data(req, action, from_state, principal, now, data), now=now)
    await record_notice(session, req, EVENT[action], now, note=note, extra=data)  # who is told: svc_residents
    emergency_feed.record_change(session, req, now, from_state=from_state)  # the call-out follows the request
    await session.flush()
    return req


def _stale(status: int) -> Problem:
    if status == 412:
        return Problem(412, "precondition_failed", ("诉求已被他人更新（If-Match 版本不符），请刷新后重试",
                                                    "The request changed (If-Match mismatch); reload and retry"))
    return Problem(409, "version_conflict", ("诉求已被他人更新，请刷新后重试",
                                             "The request was changed by someone else; reload and retry"))


async def get_request(session: AsyncSession, principal: Principal, request_id: str) -> ServiceRequest:
    req = await session.get(ServiceRequest, request_id)
    if req is None or not can_see(principal, req):
        raise UNSEEN
    return req


async def transition(session: AsyncSession, principal: Principal, request_id: str, body: TransitionIn, *,
                     if_match: int | None, clock: Clock, settings: ServicesSettings,
                     matching_now: dict[str, Any] | None = None) -> ServiceRequest:
    req = await get_request(session, principal, request_id)
    if body.version is None and if_match is None:
        raise Problem(428, "precondition_required", ("请在 version 字段或 If-Match 头中给出当前版本号",
                                                     "Give the current version in `version` or If-Match"))
    stale_status = 409 if body.version is not None else 412
    expected = body.version if body.version is not None else if_match
    if expected != req.version:
        raise _stale(stale_status)
    action = body.action
    rule = TRANSITIONS.get((req.state, action))
    if rule is None:
        raise _not_allowed(req, action, principal)
    if principal.role not in rule.roles or not may_act(principal, req, action):
        raise _not_allowed(req, action, principal, status=403)
    note = (body.note or "").strip() or None
    if rule.note_required and not note:
        raise invalid("note", "note.required", f"“{ACTION_ZH[action]}”须填写说明", f"'{action}' needs a note")
    move = Move(session, req, principal, body, note, clock.now(), WorkCalendar.from_settings(settings), clock,
                matching_now)
    handler = ACTION_RULES.get(action)
    if handler is not None:
        await handler(move)
    changes, data = move.changes, move.data
    return await apply(session, req, principal, action, note=note, expected_version=expected, changes=changes,
                       clock=clock, data=data, stale_status=stale_status)


# ---------------------------------------------------------------------------------------------- the rules per action
@dataclass
class Move:
    """One move being made: what an action's rule reads, and the changes and event data it adds."""
    session: AsyncSession
    req: ServiceRequest
    principal: Principal
    body: TransitionIn
    note: str | None
    now: datetime
    cal: WorkCalendar
    clock: Clock
    matching_now: dict[str, Any] | None
    changes: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    async def item_version(self) -> CatalogueItemVersion:
        return await self.session.get(CatalogueItemVersion, (self.req.item_code, self.req.item_version))


async def _accept(m: Move) -> None:
    if m.req.accepted_at is None:
        iv = await m.item_version()
        m.changes["accepted_at"] = m.now
        if m.req.priority != "emergency":
            m.changes["response_due_at"] = m.cal.add(m.now, iv.response_hours, working=iv.working_hours)
        m.changes["resolution_due_at"] = m.cal.add(m.now, iv.resolution_hours,
                                                   working=iv.working_hours and m.req.priority != "emergency")
        m.data["working_hours"] = iv.working_hours


async def _dispatch(m: Move) -> None:
    from svc_services.dispatch.choice import dispatch_choice  # a recommendation by rank, or a manual choice
    assignee, how = dispatch_choice(m.req, m.body.assignee, m.body.candidate_rank, m.matching_now)
    m.changes.update(assignee_kind=assignee["kind"], assignee_id=assignee["id"])
    m.data["assignee"] = assignee
    m.data.update(how)


async def _claim(m: Move) -> None:
    if m.req.first_response_at is None:
        m.changes["first_response_at"] = m.now


async def _start(m: Move) -> None:
    await _claim(m)
    if m.req.started_at is None:
        m.changes["started_at"] = m.now


async def _return(m: Move) -> None:
    m.data["returned_by"] = {"kind": m.req.assignee_kind, "id": m.req.assignee_id}
    m.changes.update(assignee_kind=None, assignee_id=None)


async def _resolve(m: Move) -> None:
    m.changes["resolved_at"] = m.now


async def _rate(m: Move) -> None:
    rating = m.body.rating
    if rating is None or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise invalid("rating", "rating.range", "评价须为 1–5 分", "A rating is 1 to 5")
    m.changes.update(rating=rating, rating_comment=m.body.comment, rated_at=m.now)
    m.data.update(rating=rating)


async def _close(m: Move) -> None:
    m.changes["closed_at"] = m.now


async def _reopen(m: Move) -> None:
    req = m.req
    if m.principal.role in OWNER and (req.rating is None or req.rating > 2):
        raise Problem(409, "reopen.needs_low_rating",
                      ("评价为 1–2 分（不满意）时才可申请重办", "Residents may reopen after a rating of 1 or 2"),
                      extra={"state": req.state, "rating": req.rating})
    iv = await m.item_version()
    m.data["previous_rating"] = req.rating
    m.changes.update(rating=None, rating_comment=None, rated_at=None, resolved_at=None, overdue=False,
                     resolution_breached_at=None, next_escalation_at=None,
                     resolution_due_at=m.cal.add(m.now, iv.resolution_hours, working=iv.working_hours))


async def _escalate(m: Move) -> None:
    up = next_level(m.req.escalation_level)
    if up is None:
        raise Problem(409, "escalation.top", ("已升级至部门层级，无法继续升级", "Already at the top level"),
                      extra={"state": m.req.state, "escalation_level": m.req.escalation_level})
    m.changes["escalation_level"] = up
    m.data.update(level_from=m.req.escalation_level, level_to=up)


async def _merge(m: Move) -> None:
    into = m.body.into
    if not into:
        raise invalid("into", "merge.into_required", "合并须指定保留的诉求编号", "Merge needs `into`")
    if into == m.req.id:
        raise invalid("into", "merge.self", "不能与自身合并", "Cannot merge into itself")
    target = await m.session.get(ServiceRequest, into)
    if target is None or not can_see(m.principal, target):
        raise invalid("into", "merge.unknown", "要合并到的诉求不存在", "Unknown target request")
    if target.state in ("rejected", "closed", "cancelled", "merged"):
        raise invalid("into", "merge.target_closed", "要合并到的诉求已结束", "The target request is finished")
    m.changes["merged_into"] = target.id
    m.data["into"] = target.id
    from svc_services.requests.merge import absorb  # the target's timeline names the merged request
    await absorb(m.session, target, m.req, m.principal, m.note, m.clock)


# What each action changes beyond the state, beside `lifecycle.TRANSITIONS` (which says where it may go and who
# may): reject and cancel change nothing more.
ACTION_RULES: dict[str, Callable[[Move], Awaitable[None]]] = {
    "accept": _accept, "dispatch": _dispatch, "claim": _claim, "start": _start, "return": _return,
    "resolve": _resolve, "rate": _rate, "close": _close, "reopen": _reopen, "escalate": _escalate, "merge": _merge,
}
assert set(ACTION_RULES) <= set(ACTIONS) and set(ACTIONS) - set(ACTION_RULES) == {"reject", "cancel"}


async def timeline(session: AsyncSession, request_id: str) -> list[TimelineEntry]:
    return list((await session.execute(select(TimelineEntry).where(TimelineEntry.request_id == request_id)
                                       .order_by(TimelineEntry.seq))).scalars())


# ---------------------------------------------------------------------------------------------- queries
async def list_requests(session: AsyncSession, principal: Principal, *, mine: bool, states: list[str] | None,
                        overdue: bool | None, priority: str | None, channel: str | None, item_code: str | None,
                        grid: str | None, community: str | None, after: str | None,
                        limit: int) -> list[ServiceRequest]:
    if principal.role == "evaluator":
        raise Problem(403, "forbidden", ("评估机构只能查看汇总指标", "Evaluators read aggregated metrics only"))
    R = ServiceRequest
    stmt = select(R).order_by(R.id.desc()).limit(limit + 1)
    if mine:
        pid = principal.person_id
        stmt = stmt.where(R.person_id == pid) if pid else stmt.where(R.submitted_by == principal.caller)
    clause = visibility_clause(principal)
    if clause is not None:
        stmt = stmt.where(clause)
    if states:
        stmt = stmt.where(R.state.in_(states))
    if overdue is not None:
        stmt = stmt.where(R.overdue == overdue)  # `= true` is what the partial index on overdue matches
    if priority:
        stmt = stmt.where(R.priority == priority)
    if channel:
        stmt = stmt.where(R.channel == channel)
    if item_code:
        stmt = stmt.where(R.item_code == item_code)
    if grid:
        stmt = stmt.where(R.grid == grid)
    if community:
        stmt = stmt.where(R.community == community)
    if after:
        stmt = stmt.where(R.id < after)
    return list((await session.execute(stmt)).scalars())
