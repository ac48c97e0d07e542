"""Topics, co-signs, discussion and meetings (thin HTTP layer; rules in topics / access)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import select

from common.acting import acts
from common.auth import Principal, require_roles
from common.deps import AppClock, DbSession
from common.errors import Forbidden
from common.pagination import Page, PageParams
from common.validators import CommunityCode
from svc_services.deps import Idempotent
from svc_services.deliberation import electors, lifecycle, topics
from svc_services.deliberation.access import PARTAKERS, get_topic, manages, visible_filter
from svc_services.deliberation.models import DeliberationPolicy, Meeting, Topic, TopicEntry
from svc_services.deliberation.schemas import (
    CommentIn, CommentOut, ElectorIn, ElectorOut, HideIn, MeetingIn, MeetingOut, PolicyIn, PolicyOut, RecordIn,
    TopicCreate, TopicDetail, TopicOut, TransitionIn,
)
from svc_services.requesters.router import feed_source

router = APIRouter(prefix="/services/v1", tags=["deliberation 居民议事"])
PathId = Annotated[str, Path(min_length=1, max_length=36)]
PARTAKER = Depends(require_roles(*PARTAKERS))
Community = Annotated[CommunityCode, Path()]


@router.put("/deliberation/electors/{person_id}", response_model=ElectorOut,
            summary="更新议事选民信息（居民信息库同步） Replace a person's residency for deliberation")
async def put_elector(session: DbSession, clock: AppClock, body: ElectorIn, person_id: PathId,
                      principal: Principal = Depends(feed_source)):
    async with session.begin():
        row = await electors.apply_snapshot(session, person_id, body, clock.now())
    return ElectorOut.model_validate(row)


@router.delete("/deliberation/electors/{person_id}", status_code=204,
               summary="移出议事选民（合并或注销） Remove a person from the electorate")
async def delete_elector(session: DbSession, clock: AppClock, person_id: PathId,
                         version: int | None = Query(None, ge=1, le=2**31 - 1, description="来源版本号"),
                         principal: Principal = Depends(feed_source)):
    async with session.begin():
        await electors.remove(session, person_id, version, clock.now())
    return Response(status_code=204)  # removing someone unknown without a version leaves nothing to remove


@router.put("/deliberation/policies/{community_code}", response_model=PolicyOut,
            summary="设置社区议事规则（联署门槛） Set a community's co-sign threshold")
async def put_policy(session: DbSession, clock: AppClock, body: PolicyIn, community_code: Community,
                     principal: Principal = PARTAKER):
    if not (principal.role == "ops" or (principal.role in ("community_staff", "street_staff")
                                        and principal.covers_place(community_code))):
        raise Forbidden(("只有本社区或街道工作人员可以设置议事规则", "Only the community's or street's staff set this"),
                        code="topic.not_manager")
    async with session.begin():
        row = await session.get(DeliberationPolicy, community_code, with_for_update=True)
        if row is None:
            row = DeliberationPolicy(community_code=community_code)
            session.add(row)
        row.cosign_threshold, row.updated_at = body.cosign_threshold, clock.now()
    return PolicyOut.model_validate(row)


async def _detail(session, principal: Principal, t: Topic) -> TopicDetail:
    entries = (await session.execute(select(TopicEntry).where(TopicEntry.topic_id == t.id)
                                     .order_by(TopicEntry.id))).scalars().all()
    actions = []
    if manages(principal, t):
        actions = lifecycle.allowed_actions(t.stage, principal.role)
    elif principal.role in lifecycle.OWNER and principal.person_id == t.proposer_person_id:
        actions = [a for a in lifecycle.allowed_actions(t.stage, principal.role) if a == "withdraw"]
    return TopicDetail.model_validate(t).model_copy(update={"timeline": entries, "allowed_actions": actions})


@router.post("/topics", status_code=201, response_model=TopicDetail,
             dependencies=[acts("deliberation.propose")],
             summary="提出议题（居民提议、诉求升级为大事、工作人员立题） Propose or open a topic")
async def create_topic(idem: Idempotent, clock: AppClock, body: TopicCreate, principal: Principal = PARTAKER):
    now = clock.now()

    async def create(session):
        t = await topics.create_topic(session, principal, body, now)
        return 201, await _detail(session, principal, t)

    return await idem.run(body, create, now=now)


@router.get("/topics", response_model=Page[TopicOut], summary="议题 Topics in the caller's reach")
async def list_topics(session: DbSession, page: PageParams = Depends(),
                      stage: str | None = Query(None, max_length=16),
                      request_id: str | None = Query(None, max_length=36, description="由该诉求升级的议题"),
                      principal: Principal = PARTAKER):
    stmt = select(Topic)
    where = await visible_filter(session, principal)
    if where is not None:
        stmt = stmt.where(where)
    if stage:
        stmt = stmt.where(Topic.stage == stage)
    if request_id:
        stmt = stmt.where(Topic.request_id == request_id)
    rows = (await session.execute(page.keyset(stmt, Topic.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=TopicOut.model_validate)


@router.get("/topics/{topic_id}", response_model=TopicDetail, summary="议题详情与进程 A topic and its timeline")
async def read_topic(session: DbSession, topic_id: PathId, principal: Principal = PARTAKER):
    return await _detail(session, principal, await get_topic(session, principal, topic_id))


@router.post("/topics/{topic_id}/transitions", response_model=TopicDetail, summary="推进议题 Move a topic",
             dependencies=[acts("deliberation.propose")])
async def transition(session: DbSession, clock: AppClock, body: TransitionIn, topic_id: PathId,
                     principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id, for_update=True)
        await topics.transition(session, principal, t, body.action, body.version, body.note, clock.now())
    return await _detail(session, principal, t)


@router.post("/topics/{topic_id}/cosigns", response_model=TopicDetail, summary="联署提议 Co-sign a proposal",
             dependencies=[acts("deliberation.cosign")])
async def cosign(session: DbSession, clock: AppClock, topic_id: PathId,
                 principal: Principal = Depends(require_roles("resident", "proxy"))):
    async with session.begin():
        t = await get_topic(session, principal, topic_id, for_update=True)
        await topics.cosign(session, principal, t, clock.now())
    return await _detail(session, principal, t)


def _comment_out(principal: Principal, t: Topic, c) -> CommentOut:
    out = CommentOut.model_validate(c)
    # a hidden comment stays on record: its words for the moderators only, its reason for everyone
    return out.model_copy(update={"text": None}) if c.hidden and not manages(principal, t) else out


@router.post("/topics/{topic_id}/comments", status_code=201, response_model=CommentOut, summary="发表意见 Comment",
             dependencies=[acts("deliberation.comment")])
async def comment(session: DbSession, clock: AppClock, body: CommentIn, topic_id: PathId,
                  principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id)
        c = await topics.add_comment(session, principal, t, body.text, clock.now())
    return _comment_out(principal, t, c)


@router.get("/topics/{topic_id}/comments", response_model=list[CommentOut], summary="讨论 The discussion")
async def list_comments(session: DbSession, topic_id: PathId, principal: Principal = PARTAKER):
    t = await get_topic(session, principal, topic_id)
    return [_comment_out(principal, t, c) for c in await topics.comments(session, t)]


@router.post("/topics/{topic_id}/comments/{comment_id}/hide", response_model=CommentOut,
             summary="隐藏评论（注明理由，不删除） Hide a comment with a reason")
async def hide(session: DbSession, clock: AppClock, body: HideIn, topic_id: PathId, comment_id: PathId,
               principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id)
        c = await topics.hide_comment(session, principal, t, comment_id, body.reason, clock.now())
    return _comment_out(principal, t, c)


@router.post("/topics/{topic_id}/meetings", status_code=201, response_model=MeetingOut,
             summary="召集议事会 Call a council meeting")
async def create_meeting(session: DbSession, clock: AppClock, body: MeetingIn, topic_id: PathId,
                         principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id, for_update=True)
        m = await topics.create_meeting(session, principal, t, body, clock.now())
    return MeetingOut.model_validate(m)


@router.get("/topics/{topic_id}/meetings", response_model=list[MeetingOut], summary="议事会 Meetings of a topic")
async def list_meetings(session: DbSession, topic_id: PathId, principal: Principal = PARTAKER):
    t = await get_topic(session, principal, topic_id)
    rows = (await session.execute(select(Meeting).where(Meeting.topic_id == t.id)
                                  .order_by(Meeting.starts_at))).scalars().all()
    return [MeetingOut.model_validate(m) for m in rows]


@router.post("/topics/{topic_id}/meetings/{meeting_id}/record", response_model=MeetingOut,
             summary="登记到会与会议纪要 Record attendance and minutes")
async def record_meeting(session: DbSession, clock: AppClock, body: RecordIn, topic_id: PathId,
                         meeting_id: PathId, principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id)
        m = await topics.record_meeting(session, principal, t, meeting_id, body, clock.now())
    return MeetingOut.model_validate(m)

