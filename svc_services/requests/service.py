"""Rules for requests (诉求 / 工单): intake, the lifecycle, per-object authorisation and queries."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, bindparam, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from common.auth import Principal
from common.clock import Clock
from common.db import QueryPlan, run_plan
from common.errors import Problem, invalid
from common.ids import new_id
from common.outbox import record_event
from svc_services.base import OutboxEvent
from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion
from svc_services.codes import ESCALATION_LEVELS, ONLINE_CHANNELS
from svc_services.grids.models import ServiceGrid
from svc_services.grids.router import distance_m, nearest_grid
from svc_services.requesters.models import RequesterProfile
from svc_services.requesters.service import requester_facts
from svc_services.requests.attributes import validate_attributes
from svc_services.requests.lifecycle import ACTION_ZH, EVENT, OPEN, OWNER, STATE_ZH, TRANSITIONS, allowed_actions
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.requests.schemas import DuplicateOut, RequestCreate, RequestOut
from svc_services.requests.schemas import TimelineOut, TransitionIn
from svc_services.settings import ServicesSettings
from svc_services.sla.calendar import WorkCalendar

SUBMIT_ROLES = ("resident", "proxy", "grid_worker", "community_staff", "street_staff", "dept_staff", "ops", "system")
PLACE_STAFF = ("grid_worker", "community_staff", "street_staff")
UNSEEN = Problem(404, "request.not_found", ("诉求不存在或无权查看", "Request not found"))


# ---------------------------------------------------------------------------------------------- authorisation
def can_see(principal: Principal, req: ServiceRequest) -> bool:
    role = principal.role
    if role in ("ops", "system"):
        return True
    if role in OWNER:
        return principal.person_id is not None and req.person_id == principal.person_id
    if role in PLACE_STAFF:
        return principal.covers_place(req.grid)
    if role == "provider":
        return req.assignee_kind == "provider" and req.assignee_id in principal.scope_values("provider")
    if role == "dept_staff":
        depts = principal.scope_values("dept")
        return ((req.assignee_kind == "department" and req.assignee_id in depts)
                or (req.escalation_level == "department" and req.department in depts))
    return False


def visibility_clause(principal: Principal):
    role = principal.role
    R = ServiceRequest
    if role in ("ops", "system"):
        return None
    if role in OWNER:
        return R.person_id == principal.person_id if principal.person_id else false()
    if role in PLACE_STAFF:
        prefixes = [v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)]
        return or_(*[R.grid.startswith(p) for p in prefixes]) if prefixes else false()
    if role == "provider":
        ids = principal.scope_values("provider")
        return and_(R.assignee_kind == "provider", R.assignee_id.in_(ids)) if ids else false()
    if role == "dept_staff":
        depts = principal.scope_values("dept")
        if not depts:
            return false()
        return or_(and_(R.assignee_kind == "department", R.assignee_id.in_(depts)),
                   and_(R.escalation_level == "department", R.department.in_(depts)))
    return false()


def _may_act(principal: Principal, req: ServiceRequest, action: str) -> bool:
    """Object-level check on top of the table's role check."""
    role = principal.role
    if role in ("ops", "system"):
        return True
    if role in OWNER:
        return principal.person_id is not None and req.person_id == principal.person_id
    if role in ("community_staff", "street_staff", "grid_worker"):
        if not principal.covers_place(req.grid):
            return False
        if role == "grid_worker" and action in ("claim", "return") and req.assignee_kind != "grid_worker":
            return False
        return True
    if role in ("provider", "dept_staff"):
        return can_see(principal, req)
    return False


# ---------------------------------------------------------------------------------------------- output
def to_out(req: ServiceRequest, principal: Principal | None = None,
           timeline: list[TimelineEntry] | None = None) -> RequestOut:
    # a RequestRow (intake) is a dict of the row's values already
    values = req if isinstance(req, dict) else {c.key: getattr(req, c.key) for c in ServiceRequest.__table__.columns}
    out = RequestOut.model_validate({**values, "state_name": STATE_ZH.get(req.state, req.state)})
    if principal is not None:
        out.allowed_actions = [a for a in allowed_actions(req.state, principal.role)
                               if _may_act(principal, req, a)]
    if timeline is not None:
        out.timeline = [TimelineOut.model_validate(t) for t in timeline]
    return out


def event_data(req: ServiceRequest, action: str, from_state: str | None, principal: Principal,
               occurred_at: datetime, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    data = {
        "request_id": req.id, "action": action, "from_state": from_state, "to_state": req.state,
        "version": req.version, "channel": req.channel, "online": req.channel in ONLINE_CHANNELS,
        "item_code": req.item_code, "item_version": req.item_version, "category": req.category,
        "department": req.department,
        "departments": sorted({req.department} | ({req.assignee_id} if req.assignee_kind == "department" else set())),
        "priority": req.priority, "community": req.community, "grid": req.grid,
        "proxy": req.proxy_user is not None, "actor_role": principal.role,
        "escalation_level": req.escalation_level, "assignee_kind": req.assignee_kind, "overdue": req.overdue,
        "submitted_at": iso(req.created_at), "accepted_at": iso(req.accepted_at),
        "first_response_at": iso(req.first_response_at), "started_at": iso(req.started_at),
        "resolved_at": iso(req.resolved_at), "closed_at": iso(req.closed_at),
        "response_due_at": iso(req.response_due_at), "resolution_due_at": iso(req.resolution_due_at),
        "occurred_at": iso(occurred_at),
    }
    if req.rating is not None:
        data["rating"] = req.rating
    if extra:
        data.update(extra)
    return data


# ---------------------------------------------------------------------------------------------- intake
class Lookups:
    """What intake reads besides the body: the item's current version and grids. Backed by the session here;
    `requests.intake` backs them by process caches (item versions are immutable, grids are never removed)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def item(self, code: str) -> CatalogueItemVersion | None:
        """The item's current version in one round trip (an unknown or withdrawn item finds no row)."""
        Item, Version = CatalogueItem, CatalogueItemVersion
        return (await self.session.execute(
            select(Version).join(Item, and_(Item.code == Version.item_code, Item.current_version == Version.version))
            .where(Item.code == code, Item.active.is_(True)))).scalar_one_or_none()

    async def grid(self, code: str) -> ServiceGrid | None:
        return await self.session.get(ServiceGrid, code)

    async def nearest(self, lat: float, long: float, radius_m: float) -> ServiceGrid | None:
        return await nearest_grid(self.session, lat, long, radius_m)

    async def requester(self, person_id: str) -> RequesterProfile | None:
        """The requester's profile replica (birth date, group tags) for the submission event; never a call to
        svc_residents (the process-cached lookups of `requests.intake` read it through `ProfileCache`)."""
        return await self.session.get(RequesterProfile, person_id)


async def _locate(lookups: Lookups, principal: Principal, body: RequestCreate,
                  settings: ServicesSettings) -> ServiceGrid:
    loc = body.location
    if (loc.lat is None) != (loc.long is None):
        raise invalid("location", "location.incomplete", "经纬度须同时提供", "Give both lat and long")
    if loc.grid:
        grid = await lookups.grid(loc.grid)
        if grid is None:
            raise invalid("location.grid", "location.grid_unknown", "网格编码不存在", "Unknown grid code")
        return grid
    if loc.lat is not None:
        grid = await lookups.nearest(loc.lat, loc.long, settings.grid_match_radius_m)
        if grid is None:
            raise invalid("location", "location.outside_grids", "该位置不在任何网格范围内",
                          "The location is outside every grid")
        return grid
    own = principal.scope_values("grid")
    if principal.role == "grid_worker" and len(own) == 1:
        grid = await lookups.grid(own[0])
        if grid is not None:
            return grid
    raise invalid("location.grid", "location.grid_required", "请提供网格编码或经纬度",
                  "Give a grid code or a lat/long")


def outbox_row(type_: str, *, subject: str, community: str | None, grid: str | None, data: dict[str, Any],
               now: datetime) -> dict[str, Any]:
    """The values `common.outbox.record_event` gives an outbox row, as a dict for a Core INSERT."""
    return {"event_id": new_id(), "type": type_, "occurred_at": now, "community": community, "grid": grid,
            "subject": subject, "data": data, "created_at": now, "delivered_at": None, "attempts": 0,
            "next_attempt_at": now, "last_error": None}


class RequestRow(dict):
    """A request about to be inserted, as the row's values, readable like a `ServiceRequest` (`to_out`,
    `event_data`, `can_see` and `find_duplicates` read attributes): building the ORM instance cost more than
    all the checks of a submission."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_REQUEST_COLUMNS = tuple(c.key for c in ServiceRequest.__table__.columns)


class Prepared:
    """A checked submission not yet written: the request's row, its first timeline entry and its event."""

    __slots__ = ("req", "item", "timeline", "event")

    def __init__(self, req: RequestRow, item: CatalogueItemVersion, timeline: dict[str, Any],
                 event: dict[str, Any]) -> None:
        self.req, self.item, self.timeline, self.event = req, item, timeline, event


async def prepare(lookups: Lookups, principal: Principal, body: RequestCreate, clock: Clock,
                  settings: ServicesSettings, *, request_id: str | None = None) -> Prepared:
    """Every check of a submission and the rows it makes; nothing is written (see `submit`, `requests.intake`)."""
    role = principal.role
    if role not in SUBMIT_ROLES:
        raise Problem(403, "forbidden", (f"当前角色（{role}）不能提交诉求", f"Role {role} may not submit requests"))
    iv = await lookups.item(body.item_code)
    if iv is None:
        raise invalid("item_code", "item.unknown", "事项不存在或已停用", "Unknown or withdrawn catalogue item")
    if body.channel not in iv.channels:
        raise invalid("channel", "channel.not_offered", "该事项不支持此渠道办理", "This item is not offered on this channel")
    if body.channel == "grid_patrol" and role not in ("grid_worker", "ops"):
        raise invalid("channel", "channel.role", "网格巡查渠道仅限网格员", "grid_patrol is for grid workers")
    if body.channel == "iot" and role not in ("system", "ops"):
        raise invalid("channel", "channel.role", "物联感知渠道仅限系统接入", "iot is for member systems")

    # who the request is for, and who acted (代办)
    proxy_user = None
    if role == "resident":
        person_id = principal.person_id
        if person_id is None or (body.person_id and body.person_id != person_id):
            raise Problem(403, "forbidden", ("居民只能为本人提交诉求", "Residents submit for themselves only"))
    elif role == "proxy":
        person_id = principal.acting_for
        if person_id is None or (body.person_id and body.person_id != person_id):
            raise Problem(403, "forbidden", ("代办员只能为其代办的居民提交诉求",
                                             "A proxy submits only for the person it acts for"))
        proxy_user = principal.caller
    else:
        person_id = body.person_id
        proxy_user = principal.caller if person_id else None
    if role in OWNER and body.priority not in (None, "normal"):
        raise invalid("priority", "priority.forbidden", "居民提交时不能指定优先级", "Residents cannot set priority")

    attributes = validate_attributes(iv.attributes, body.attributes)
    grid = await _locate(lookups, principal, body, settings)
    if role in PLACE_STAFF and not principal.covers_place(grid.code):
        raise Problem(403, "forbidden", ("只能登记本辖区内的诉求", "You may only register requests in your scope"))

    if iv.emergency:
        priority = "emergency"
    elif body.priority:
        priority = body.priority
    else:
        priority = "urgent" if role == "proxy" else "normal"

    now = clock.now()
    req = RequestRow.fromkeys(_REQUEST_COLUMNS)
    req.update(
        id=request_id or new_id(), item_code=iv.item_code, item_version=iv.version, category=iv.category,
        department=iv.department,
        channel=body.channel, person_id=person_id, submitted_by=principal.caller, submitted_role=role,
        proxy_user=proxy_user, description=body.description, attributes=attributes,
        address=body.location.address, media_url=body.media_url, lat=body.location.lat, long=body.location.long,
        grid=grid.code, community=grid.community_code, street=grid.code[:9], priority=priority, state="submitted",
        version=1, escalation_level="grid", overdue=False, created_at=now, updated_at=now)
    if priority == "emergency":
        req.update(response_due_at=now + timedelta(seconds=settings.emergency_ack_seconds),
                   start_due_at=now + timedelta(seconds=settings.emergency_start_seconds))
    timeline = {"id": new_id(), "request_id": req.id, "seq": 1, "action": "submit", "from_state": None,
                "to_state": "submitted", "actor": principal.caller, "role": role,
                "acting_for": person_id if proxy_user else None, "note": None,
                "data": {"channel": body.channel, "item_version": iv.version}, "occurred_at": now}
    # Who the request is for, as the indicators need it (65+ usage, special-group filters): the person id, age
    # and group tags from svc_services' own profile replica, not a call per submission (see requesters/service.py).
    requester = requester_facts(person_id, await lookups.requester(person_id) if person_id else None, now)
    event = outbox_row("request.submitted", subject=req.id, community=req.community, grid=req.grid,
                       data=event_data(req, "submit", None, principal, now, requester), now=now)
    return Prepared(req, iv, timeline, event)


async def submit(session: AsyncSession, principal: Principal, body: RequestCreate, clock: Clock,
                 settings: ServicesSettings, *, request_id: str | None = None) -> ServiceRequest:
    p = await prepare(Lookups(session), principal, body, clock, settings, request_id=request_id)
    req = ServiceRequest(**p.req)
    session.add(req)  # flushed with its timeline entry and event below: one round of INSERTs
    session.add(TimelineEntry(**p.timeline))
    session.add(OutboxEvent(**p.event))
    await session.flush()
    return req


# ---------------------------------------------------------------------------------------------- lifecycle
def _not_allowed(req: ServiceRequest, action: str, principal: Principal, status: int = 409) -> Problem:
    allowed = [a for a in allowed_actions(req.state, principal.role) if _may_act(principal, req, a)]
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
    rule = TRANSITIONS[(req.state, action)]
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
    if principal.role not in rule.roles or not _may_act(principal, req, action):
        raise _not_allowed(req, action, principal, status=403)
    note = (body.note or "").strip() or None
    if rule.note_required and not note:
        raise invalid("note", "note.required", f"“{ACTION_ZH[action]}”须填写说明", f"'{action}' needs a note")
    now = clock.now()
    changes: dict[str, Any] = {}
    data: dict[str, Any] = {}
    cal = WorkCalendar.from_settings(settings)

    async def item_version() -> CatalogueItemVersion:
        return await session.get(CatalogueItemVersion, (req.item_code, req.item_version))

    if action == "accept":
        if req.accepted_at is None:
            iv = await item_version()
            changes["accepted_at"] = now
            if req.priority != "emergency":
                changes["response_due_at"] = cal.add(now, iv.response_hours, working=iv.working_hours)
            changes["resolution_due_at"] = cal.add(now, iv.resolution_hours,
                                                   working=iv.working_hours and req.priority != "emergency")
            data["working_hours"] = iv.working_hours
    elif action == "dispatch":
        from svc_services.dispatch.choice import dispatch_choice  # a recommendation by rank, or a manual choice
        assignee, how = dispatch_choice(req, body.assignee, body.candidate_rank, matching_now)
        changes.update(assignee_kind=assignee["kind"], assignee_id=assignee["id"])
        data["assignee"] = assignee
        data.update(how)
    elif action in ("claim", "start"):
        if req.first_response_at is None:
            changes["first_response_at"] = now
        if action == "start" and req.started_at is None:
            changes["started_at"] = now
    elif action == "return":
        data["returned_by"] = {"kind": req.assignee_kind, "id": req.assignee_id}
        changes.update(assignee_kind=None, assignee_id=None)
    elif action == "resolve":
        changes["resolved_at"] = now
    elif action == "rate":
        if body.rating is None or isinstance(body.rating, bool) or not 1 <= body.rating <= 5:
            raise invalid("rating", "rating.range", "评价须为 1–5 分", "A rating is 1 to 5")
        changes.update(rating=body.rating, rating_comment=body.comment, rated_at=now)
        data.update(rating=body.rating)
    elif action == "close":
        changes["closed_at"] = now
    elif action == "reopen":
        if principal.role in OWNER and (req.rating is None or req.rating > 2):
            raise Problem(409, "reopen.needs_low_rating",
                          ("评价为 1–2 分（不满意）时才可申请重办", "Residents may reopen after a rating of 1 or 2"),
                          extra={"state": req.state, "rating": req.rating})
        iv = await item_version()
        data["previous_rating"] = req.rating
        changes.update(rating=None, rating_comment=None, rated_at=None, resolved_at=None, overdue=False,
                       resolution_breached_at=None, next_escalation_at=None,
                       resolution_due_at=cal.add(now, iv.resolution_hours, working=iv.working_hours))
    elif action == "escalate":
        up = next_level(req.escalation_level)
        if up is None:
            raise Problem(409, "escalation.top", ("已升级至部门层级，无法继续升级", "Already at the top level"),
                          extra={"state": req.state, "escalation_level": req.escalation_level})
        changes["escalation_level"] = up
        data.update(level_from=req.escalation_level, level_to=up)
    elif action == "merge":
        if not body.into:
            raise invalid("into", "merge.into_required", "合并须指定保留的诉求编号", "Merge needs `into`")
        if body.into == req.id:
            raise invalid("into", "merge.self", "不能与自身合并", "Cannot merge into itself")
        target = await session.get(ServiceRequest, body.into)
        if target is None or not can_see(principal, target):
            raise invalid("into", "merge.unknown", "要合并到的诉求不存在", "Unknown target request")
        if target.state in ("rejected", "closed", "cancelled", "merged"):
            raise invalid("into", "merge.target_closed", "要合并到的诉求已结束", "The target request is finished")
        changes["merged_into"] = target.id
        data["into"] = target.id
        from svc_services.requests.merge import absorb  # the target's timeline names the merged request
        await absorb(session, target, req, principal, note, clock)
    return await apply(session, req, principal, action, note=note, expected_version=expected, changes=changes,
                       clock=clock, data=data, stale_status=stale_status)


async def timeline(session: AsyncSession, request_id: str) -> list[TimelineEntry]:
    return list((await session.execute(select(TimelineEntry).where(TimelineEntry.request_id == request_id)
                                       .order_by(TimelineEntry.seq))).scalars())


_DUPLICATE_COLUMNS = (ServiceRequest.id, ServiceRequest.lat, ServiceRequest.long, ServiceRequest.state,
                      ServiceRequest.created_at, ServiceRequest.grid, ServiceRequest.person_id,
                      ServiceRequest.assignee_kind, ServiceRequest.assignee_id, ServiceRequest.escalation_level,
                      ServiceRequest.department)


# what a possible duplicate by grid shows (`DuplicateOut`): intake's batches read these for every submission
_GRID_DUPLICATE_COLUMNS = (ServiceRequest.id, ServiceRequest.state, ServiceRequest.created_at, ServiceRequest.grid)

MAX_DUPLICATES = 20


def duplicates_plan(principal: Principal, req: ServiceRequest, settings: ServicesSettings) -> QueryPlan:
    """Open requests of the same item within `duplicate_window_hours` of `req` that the caller may see: with a
    lat/long, those within `duplicate_radius_m` (nearest first); then those of the same grid that have no lat/long
    to compare (a kiosk or counter submission gives a grid only), newest first. A request with a grid only is
    compared by grid with every open request of the item there.

    A query plan (`common.db.QueryPlan`): the request handlers run it on their session, the intake's writer
    thread on its blocking connection."""
    window = timedelta(hours=settings.duplicate_window_hours)
    R = ServiceRequest
    out: list[DuplicateOut] = []
    if req.lat is not None and req.long is not None:
        dlat = settings.duplicate_radius_m / 111_000 * 1.5
        dlon = dlat / max(0.1, math.cos(math.radians(req.lat)))
        rows = yield select(*_DUPLICATE_COLUMNS).where(
            R.item_code == req.item_code, R.id != req.id, R.state.in_(sorted(OPEN)),
            R.created_at >= req.created_at - window, R.created_at <= req.created_at + window,
            R.lat.between(req.lat - dlat, req.lat + dlat), R.long.between(req.long - dlon, req.long + dlon),
        ).limit(200), None
        for other in rows:
            d = distance_m(req.lat, req.long, other.lat, other.long)
            if d <= settings.duplicate_radius_m and can_see(principal, other):
                out.append(DuplicateOut(id=other.id, match="distance", distance_m=round(d, 1), grid=other.grid,
                                        state=other.state, created_at=other.created_at))
        out.sort(key=lambda o: o.distance_m)
        if len(out) >= MAX_DUPLICATES:
            return out[:MAX_DUPLICATES]
    rows = yield same_grid_query(principal, req.item_code, req.grid, req.created_at - window,
                                 req.created_at + window, limit=MAX_DUPLICATES + 1,
                                 without_location=req.lat is not None)
    out += [DuplicateOut(id=o.id, match="grid", grid=o.grid, state=o.state, created_at=o.created_at)
            for o in rows if o.id != req.id]
    return out[:MAX_DUPLICATES]


async def find_duplicates(session: AsyncSession | AsyncConnection, principal: Principal, req: ServiceRequest,
                          settings: ServicesSettings) -> list[DuplicateOut]:
    return await run_plan(session, duplicates_plan(principal, req, settings))


def same_grid_query(principal: Principal, item_code: str, grid: str, since: datetime, until: datetime, *,
                    limit: int, without_location: bool = False) -> tuple[Any, dict[str, Any]]:
    """Open requests of an item in a grid created in [since, until] that `principal` may see, newest first
    (served by ix_service_requests_item_grid_created_id): the statement and its parameters."""
    params = {"item_code": item_code, "grid": grid, "since": since, "until": until, "limit": limit}
    return _same_grid_statement(principal, without_location), params


_SAME_GRID: dict[tuple, Any] = {}


def _same_grid_statement(principal: Principal, without_location: bool):
    """The statement for one visibility (role and scopes) with the values as parameters, built once per
    visibility: intake runs it for every batch, and building it (and its cache key) cost more than running it."""
    key = (principal.role, principal.scopes, principal.person_id, without_location)
    stmt = _SAME_GRID.get(key)
    if stmt is not None:
        return stmt
    R = ServiceRequest
    stmt = (select(*_GRID_DUPLICATE_COLUMNS)
            .where(R.item_code == bindparam("item_code"), R.grid == bindparam("grid"), R.state.in_(sorted(OPEN)),
                   R.created_at >= bindparam("since"), R.created_at <= bindparam("until"))
            .order_by(R.created_at.desc(), R.id.desc()).limit(bindparam("limit", type_=Integer)))
    if without_location:
        stmt = stmt.where(R.lat.is_(None))
    clause = visibility_clause(principal)
    if clause is not None:
        stmt = stmt.where(clause)
    if len(_SAME_GRID) < 10_000:
        _SAME_GRID[key] = stmt
    return stmt


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
