"""Topics: the three sources, co-signs, the stage table applied, comments with moderation, meetings."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, NotFound, Problem, check_version, invalid
from common.ids import new_id
from common.lookup import get_or_404
from common.outbox import record_event
from svc_services.base import OutboxEvent
from svc_services.deliberation import lifecycle, request_link
from svc_services.deliberation.access import elector_of, in_scope, manages, require_manager
from svc_services.deliberation.models import (
    Comment, Cosign, DeliberationPolicy, Elector, Meeting, Topic, TopicEntry,
)
from svc_services.deliberation.schemas import MeetingIn, RecordIn, TopicCreate
from svc_services.requests.lifecycle import OPEN as REQUEST_OPEN
from svc_services.requests.models import ServiceRequest

DEFAULT_COSIGNS = 10   # a community that set no threshold of its own
SCOPE_LEN = {"community": 12, "grid": 15, "building": 18}


def grid_of(code: str) -> str | None:
    return code[:15] if len(code) >= 15 else None


def event(session: AsyncSession, type_: str, topic: Topic, now: datetime, **data) -> None:
    record_event(session, OutboxEvent, type_, subject=topic.id, now=now, community=topic.community_code,
                 grid=grid_of(topic.scope_code), data={"category": topic.category, **data})


def participated(session: AsyncSession, elector: Elector, activity: str, now: datetime) -> None:
    """svc_metrics' participation indicator counts each person once per period, whatever they did."""
    code = elector.building_code
    record_event(session, OutboxEvent, "participation.recorded", subject=None, now=now, community=code[:12],
                 grid=code[:15], data={"person_id": elector.person_id, "activity": activity})


def _entry(session: AsyncSession, topic: Topic, action: str, frm: str | None, to: str, actor: str,
           note: str | None, now: datetime) -> None:
    session.add(TopicEntry(topic_id=topic.id, action=action, from_stage=frm, to_stage=to, actor=actor, note=note,
                           at=now))


async def threshold(session: AsyncSession, community: str) -> int:
    p = await session.get(DeliberationPolicy, community)
    return p.cosign_threshold if p else DEFAULT_COSIGNS


async def create_topic(session: AsyncSession, principal: Principal, body: TopicCreate, now: datetime) -> Topic:
    if len(body.scope_code) != SCOPE_LEN[body.scope_kind]:
        raise invalid("scope_code", "topic.scope_mismatch", "范围代码与范围类型不符（社区 12 位、网格 15 位、楼栋 18 位）",
                      "scope_code does not match scope_kind (community 12, grid 15, building 18 digits)")
    elector = None
    if body.source == "proposal":
        elector = await elector_of(session, principal)
        if principal.role not in ("resident", "proxy"):
            raise invalid("source", "topic.proposal_by_resident", "居民提议须由居民本人或其代办人提出",
                          "A proposal is made by a resident (or their proxy)")
        if not in_scope(elector, body.scope_code):
            raise invalid("scope_code", "topic.proposer_outside_scope", "提议人不住在所选范围内",
                          "The proposer does not live in this scope")
    else:
        if not (principal.role == "ops" or (principal.role in lifecycle.MANAGERS + lifecycle.GRID
                                            and principal.covers_place(body.scope_code))):
            raise Forbidden(("只有负责该范围的工作人员可以直接立题", "Only staff over the scope open a topic"),
                            code="topic.not_manager")
    if body.source == "request":
        req = await session.get(ServiceRequest, body.request_id) if body.request_id else None
        if req is None or not principal.covers_place(req.grid or req.community):
            raise invalid("request_id", "topic.request_unknown", "没有这个诉求", "No such request")
        if req.state == "deliberating":  # already waiting for a topic of its own
            raise Conflict("topic.request_linked", ("该诉求已关联议题", "This request already has a topic"))
        if req.state not in REQUEST_OPEN:
            raise invalid("request_id", "topic.request_closed", "该诉求已办结，不能再升级为议题",
                          "The request is no longer open")
        place = req.grid or req.community  # the scope holds the request's grid, or is a building of it
        if not (place.startswith(body.scope_code) or body.scope_code.startswith(place)):
            raise invalid("scope_code", "topic.request_scope", "议题范围须包含该诉求所在地",
                          "The topic's scope must hold the request's place")
    elif body.request_id:
        raise invalid("request_id", "topic.request_only_for_escalation", "只有“诉求升级”来源可关联诉求",
                      "request_id goes with source=request")
    stage = lifecycle.INITIAL[body.source]
    t = Topic(id=new_id(), title=body.title, description=body.description, category=body.category,
              scope_kind=body.scope_kind, scope_code=body.scope_code, community_code=body.scope_code[:12],
              source=body.source, stage=stage, request_id=body.request_id,
              proposer_person_id=elector.person_id if elector else None,
              cosign_threshold=await threshold(session, body.scope_code[:12]) if elector else 0, cosigns=0,
              created_by=principal.caller, created_at=now, updated_at=now, version=1)
    session.add(t)
    _entry(session, t, "create", None, stage, principal.caller, None, now)
    event(session, "deliberation.topic_created", t, now, source=t.source, scope_kind=t.scope_kind)
    if elector:
        participated(session, elector, "deliberation.propose", now)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("topic.request_linked", ("该诉求已关联议题", "This request already has a topic")) from None
    if body.source == "request":  # the request waits for the outcome (its timeline names the topic)
        await request_link.escalated(session, t, req, principal, now)
    return t


async def move(session: AsyncSession, topic: Topic, action: str, actor: Principal | str, now: datetime,
               note: str | None = None) -> None:
    """Applies the table (the caller checked who); `actor` a principal (its role checked) or the system."""
    rule = lifecycle.TRANSITIONS.get((topic.stage, action))
    if rule is None:
        raise Conflict("topic.illegal_action", (f"议题当前为“{lifecycle.STAGE_ZH[topic.stage]}”，不能执行 {action}",
                                                 f"A topic in stage {topic.stage} does not take {action}"))
    if isinstance(actor, Principal) and actor.role not in rule.roles:
        raise Forbidden((f"当前角色（{actor.role}）不能执行 {action}", f"Role {actor.role} may not {action}"),
                        code="topic.role_not_allowed")
    if rule.note_required and not note:
        raise invalid("note", "topic.note_required", "该操作须填写说明", "This action needs a note")
    frm = topic.stage
    topic.stage, topic.updated_at, topic.version = rule.to, now, topic.version + 1
    _entry(session, topic, action, frm, rule.to, actor.caller if isinstance(actor, Principal) else actor, note, now)
    event(session, "deliberation.topic_moved", topic, now, action=action, from_stage=frm, to_stage=rule.to)
    await request_link.topic_moved(session, topic, action, note, now)  # a 大事's request follows the outcome


async def transition(session: AsyncSession, principal: Principal, topic: Topic, action: str, version: int,
                     note: str | None, now: datetime) -> Topic:
    check_version(version, topic.version, "topic.version_conflict")
    own = principal.role in lifecycle.OWNER and principal.person_id == topic.proposer_person_id
    if not (own and action == "withdraw"):
        require_manager(principal, topic)
    await move(session, topic, action, principal, now, note)
    return topic


async def cosign(session: AsyncSession, principal: Principal, topic: Topic, now: datetime) -> Topic:
    if topic.stage != "proposed":
        raise Conflict("topic.not_collecting", ("该议题已不在联署阶段", "The topic no longer collects co-signers"))
    elector = await elector_of(session, principal)
    if not in_scope(elector, topic.scope_code):
        raise Forbidden(("只有该范围内的居民可以联署", "Only residents of the scope co-sign"), code="topic.outside_scope")
    if elector.person_id == topic.proposer_person_id:
        raise Conflict("topic.own_proposal", ("提议人不能为自己的提议联署", "A proposer does not co-sign their own"))
    session.add(Cosign(topic_id=topic.id, person_id=elector.person_id, at=now))
    try:  # the unique (topic, person) decides, not a prior read; the caller's transaction rolls back
        await session.flush()
    except IntegrityError:
        raise Conflict("topic.already_cosigned", ("您已联署该提议", "You already co-signed this proposal")) from None
    # counted in the database, so concurrent co-signs are all counted once
    await session.execute(update(Topic).where(Topic.id == topic.id).values(cosigns=Topic.cosigns + 1))
    await session.refresh(topic)
    participated(session, elector, "deliberation.cosign", now)
    if topic.cosigns >= topic.cosign_threshold:
        await move(session, topic, "accept", "system:cosign_threshold", now,
                   f"联署 {topic.cosigns} 人，达到 {topic.cosign_threshold} 人")
    return topic


async def add_comment(session: AsyncSession, principal: Principal, topic: Topic, text: str, now: datetime) -> Comment:
    if topic.stage not in lifecycle.DISCUSSION:
        raise Conflict("topic.discussion_closed", (f"议题已“{lifecycle.STAGE_ZH[topic.stage]}”，不再接受评论",
                                                    "The topic no longer takes comments"))
    elector = None
    if principal.role in ("resident", "proxy"):
        elector = await elector_of(session, principal)
        if not in_scope(elector, topic.scope_code):
            raise Forbidden(("只有该范围内的居民可以评论", "Only residents of the scope comment"),
                            code="topic.outside_scope")
    elif not manages(principal, topic):
        raise Forbidden(("只有该范围内的居民和工作人员可以评论", "Only the scope's residents and staff comment"),
                        code="topic.outside_scope")
    c = Comment(id=new_id(), topic_id=topic.id, person_id=elector.person_id if elector else None,
                author=principal.caller, author_role=principal.role, text=text, hidden=False, at=now)
    session.add(c)
    if elector:
        participated(session, elector, "deliberation.comment", now)
    return c


async def hide_comment(session: AsyncSession, principal: Principal, topic: Topic, comment_id: str, reason: str,
                       now: datetime) -> Comment:
    require_manager(principal, topic)
    c = await get_or_404(session, Comment, comment_id, NotFound("comment.not_found", ("没有这条评论", "No such comment")),
                         visible=lambda c: c.topic_id == topic.id)
    c.hidden, c.hidden_reason, c.hidden_by = True, reason, principal.caller
    event(session, "deliberation.comment_hidden", topic, now)
    return c


async def comments(session: AsyncSession, topic: Topic) -> list[Comment]:
    return list((await session.execute(select(Comment).where(Comment.topic_id == topic.id)
                                       .order_by(Comment.at, Comment.id))).scalars())


async def create_meeting(session: AsyncSession, principal: Principal, topic: Topic, body: MeetingIn,
                         now: datetime) -> Meeting:
    require_manager(principal, topic)
    if not body.place and not body.online_url:
        raise invalid("place", "meeting.where", "请填写会议地点或线上会议链接", "Give a place or an online link")
    if topic.stage not in ("open", "meeting"):
        raise Conflict("meeting.stage", (f"议题已“{lifecycle.STAGE_ZH[topic.stage]}”，不再召集议事会",
                                         "The topic no longer takes meetings"))
    m = Meeting(id=new_id(), topic_id=topic.id, starts_at=body.starts_at, place=body.place,
                online_url=body.online_url, created_at=now,
                members=[{**x.model_dump(), "attended": None} for x in body.members])
    session.add(m)
    if topic.stage == "open":
        await move(session, topic, "convene", principal, now)
    return m


async def record_meeting(session: AsyncSession, principal: Principal, topic: Topic, meeting_id: str, body: RecordIn,
                         now: datetime) -> Meeting:
    require_manager(principal, topic)
    m = await get_or_404(session, Meeting, meeting_id, NotFound("meeting.not_found", ("没有这次议事会", "No such meeting")),
                         visible=lambda m: m.topic_id == topic.id)
    if m.starts_at > now:
        raise Problem(409, "meeting.not_held", ("会议尚未召开，不能登记到会和纪要", "The meeting has not begun"))
    refs = {x["ref"] for x in m.members}
    unknown = sorted(set(body.attended) - refs)
    if unknown:
        raise invalid("attended", "meeting.not_invited", f"不在参会名单中：{', '.join(unknown)}",
                      f"Not invited: {', '.join(unknown)}")
    m.members = [{**x, "attended": x["ref"] in body.attended} for x in m.members]
    m.minutes, m.recorded_at = body.minutes, now
    for x in m.members:
        if x["attended"] and x["kind"] == "resident_rep":
            e = await session.get(Elector, x["ref"])
            if e is not None and not e.removed:
                participated(session, e, "deliberation.attend", now)
    event(session, "deliberation.meeting_recorded", topic, now, invited=len(m.members),
          attended=sum(1 for x in m.members if x["attended"]))
    return m
