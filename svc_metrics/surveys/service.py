"""Survey rules: who manages and sees a survey, its lifecycle, revisions, invitations and one-time tokens.
Responses and results are in `responding` and `results`."""
from __future__ import annotations

import hashlib
import random
import secrets
import uuid
from datetime import datetime

from sqlalchemy import false, func, or_, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, NotFound, check_version
from common.lookup import get_or_404
from common.ids import new_id
from svc_metrics.surveys import lifecycle, sampling
from svc_metrics.surveys.models import Invitation, Survey, SurveyResponse, SurveyTally, SurveyToken
from svc_metrics.surveys.notices import record_survey_notices
from svc_metrics.surveys.questionnaire import Questionnaire
from svc_metrics.surveys.tallies import invited_rows
from svc_metrics.surveys.schemas import SurveyCreate, SurveyUpdate

MANAGERS = ("community_staff", "street_staff")
PLACE_STAFF = ("grid_worker", "community_staff", "street_staff")
NOT_FOUND = ("问卷不存在或无权查看", "Survey not found")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_manager(principal: Principal, scope: str) -> None:
    """Surveys of a place are run by its community or street staff (a grid worker enters answers on visits but
    does not set up the community's questionnaire) and by ops."""
    if principal.role == "ops" or (principal.role in MANAGERS and principal.covers_place(scope)):
        return
    raise Forbidden(("只有该辖区的社区、街道工作人员可以管理问卷", "Only community or street staff of the place run its surveys"),
                    code="survey.not_manager")


def may_see(principal: Principal, s: Survey) -> bool:
    """A published or closed questionnaire is read by every signed-in caller (it is no secret, and residents
    answer it); a draft only by staff whose places cover it or lie within it, and ops."""
    if s.status != "draft" or principal.role == "ops":
        return True
    places = [v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)]
    return principal.role in PLACE_STAFF and (principal.covers_place(s.scope) or any(p.startswith(s.scope)
                                                                                   for p in places))


def visible_clause(principal: Principal):
    """may_see as SQL, for lists: published and closed surveys, and drafts over or within the caller's places."""
    if principal.role == "ops":
        return true()
    places = [v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)]
    if principal.role not in PLACE_STAFF or not places:
        return Survey.status != "draft"
    over = {p[:n] for p in places for n in (9, 12, 15) if n <= len(p)}   # survey scopes covering a place
    return or_(Survey.status != "draft", Survey.scope.in_(sorted(over)), *(Survey.scope.startswith(p) for p in places))


async def get_survey(session: AsyncSession, principal: Principal, survey_id: str, *, for_update: bool = False) -> Survey:
    return await get_or_404(session, Survey, survey_id, NotFound("survey.not_found", NOT_FOUND),
                            visible=lambda s: may_see(principal, s), for_update=for_update)


async def create(session: AsyncSession, principal: Principal, body: SurveyCreate, now: datetime) -> Survey:
    check_manager(principal, body.scope)
    sid = new_id()
    s = Survey(id=sid, family_id=sid, revision=1, title=body.title, kind=body.kind, anonymous=body.anonymous,
               scope=body.scope, period=body.period, questionnaire=body.questionnaire.model_dump(mode="json"),
               sample=body.sample.model_dump(mode="json"), status="draft", version=1, invited=0,
               created_by=principal.caller, created_at=now)
    session.add(s)
    await session.flush()
    return s


async def edit(session: AsyncSession, principal: Principal, survey_id: str, body: SurveyUpdate) -> Survey:
    s = await get_survey(session, principal, survey_id, for_update=True)
    check_manager(principal, s.scope)
    if s.status != "draft":
        raise Conflict("survey.frozen", ("已发布的问卷不能修改；请新建修订版", "A published questionnaire never changes; "
                                                                     "make a new revision"))
    check_version(body.version, s.version)
    for field in ("title", "period"):
        if getattr(body, field) is not None:
            setattr(s, field, getattr(body, field))
    if body.questionnaire is not None:
        s.questionnaire = body.questionnaire.model_dump(mode="json")
    if body.sample is not None:
        s.sample = body.sample.model_dump(mode="json")
    s.version += 1
    await session.flush()
    return s


async def revise(session: AsyncSession, principal: Principal, survey_id: str, now: datetime) -> Survey:
    """A new draft revision of the family, starting from this one's questionnaire."""
    src = await get_survey(session, principal, survey_id)
    check_manager(principal, src.scope)
    top = (await session.execute(select(func.max(Survey.revision)).where(Survey.family_id == src.family_id))).scalar_one()
    s = Survey(id=new_id(), family_id=src.family_id, revision=top + 1, title=src.title, kind=src.kind,
               anonymous=src.anonymous, scope=src.scope, period=src.period, questionnaire=src.questionnaire,
               sample=src.sample, status="draft", version=1, invited=0, created_by=principal.caller, created_at=now)
    session.add(s)
    await session.flush()
    return s


async def transition(session: AsyncSession, principal: Principal, survey_id: str, action: str, version: int,
                     now: datetime, *, floor: float, min_group: int) -> Survey:
    from svc_metrics.surveys import closing  # the close step reads results and writes the rectification

    s = await get_survey(session, principal, survey_id, for_update=True)
    check_manager(principal, s.scope)
    check_version(version, s.version)
    rule = lifecycle.TRANSITIONS.get((s.status, action))
    if rule is None:
        raise Conflict("survey.bad_transition",
                       (f"问卷当前为「{lifecycle.STATE_ZH[s.status]}」，不能{'发布' if action == 'publish' else '结束'}",
                        f"A {s.status} survey cannot {action}"),
                       extra={"status": s.status, "allowed": lifecycle.allowed(s.status)})
    if rule.freezes:
        Questionnaire.model_validate(s.questionnaire)  # what is frozen is a valid questionnaire
        s.published_at = now
    s.status, s.version = rule.to, s.version + 1
    if rule.ends_responses:
        s.closed_at = now
        await closing.close(session, s, now, floor=floor, min_group=min_group)
    await session.flush()
    return s


def actions_for(principal: Principal, s: Survey) -> list[str]:
    try:
        check_manager(principal, s.scope)
    except Forbidden:
        return []
    return lifecycle.allowed(s.status)


async def invite(session: AsyncSession, principal: Principal, survey_id: str, min_group: int,
                 now: datetime) -> tuple[Survey, int]:
    """Draw the sample and record one invitation and one one-time token per person, once per survey, and tell
    them through svc_residents' notification channels (the `notice.` rows carry no token: notices.py). The
    tokens' pool rows are inserted in a random order, so their order says nothing about the invitations'."""
    s = await get_survey(session, principal, survey_id, for_update=True)
    check_manager(principal, s.scope)
    if s.status != "published":
        raise Conflict("survey.not_published", ("问卷发布后才能发放邀请，结束后不再发放", "Invite while the survey is published"))
    if s.invited:
        raise Conflict("survey.already_invited", ("本问卷已发放邀请", "The survey's invitations are out already"))
    spec = s.sample or {}
    people = sampling.draw(await sampling.frame(session, s.scope), spec.get("mode", "all"), spec.get("size"),
                           int(spec.get("seed", 0)))
    if not people:
        raise Conflict("survey.nobody_to_invite", ("该范围内没有登记的居民", "No registered residents in the scope"))
    strata = sampling.strata(people, 1 if not s.anonymous else min_group)
    tokens = {p.id: secrets.token_urlsafe(24) for p in people}
    session.add_all(Invitation(id=str(uuid.uuid4()), survey_id=s.id, person_id=p.id, grid=p.grid,
                               community=p.community, token=tokens[p.id], delivered=False) for p in people)
    pool = [SurveyToken(digest=digest(tokens[p.id]), survey_id=s.id, place=strata[p.id][0] or s.scope,
                        age_band=strata[p.id][1], groups=strata[p.id][2],
                        person_id=None if s.anonymous else p.id, spent=False) for p in people]
    random.SystemRandom().shuffle(pool)
    session.add_all(pool)
    await session.flush()
    await session.execute(SurveyTally.__table__.insert(), invited_rows(s.id, pool))
    record_survey_notices(session, s, "survey.invited" if s.anonymous else "survey.invited_named",
                          [(p.id, p.grid) for p in people], now)
    s.invited, s.version = len(people), s.version + 1
    await session.flush()
    return s, len(set(strata.values()))


async def remind(session: AsyncSession, principal: Principal, survey_id: str, now: datetime) -> tuple[Survey, int]:
    """The one reminder of an open survey (claimed once by `reminded_at`), to the invitees not known to be done.
    Named survey: those whose token is not spent. Anonymous: svc_metrics cannot know who answered (that is the
    point), only who has not taken their token yet (the invitation still holds it); those who took it and did not
    answer are not reminded."""
    s = await get_survey(session, principal, survey_id)
    check_manager(principal, s.scope)
    if s.status != "published" or not s.invited:
        raise Conflict("survey.not_inviting", ("问卷发布并发放邀请后、结束前才能提醒",
                                               "Remind while the survey is published and its invitations are out"))
    claimed = await session.execute(update(Survey).where(Survey.id == s.id, Survey.status == "published",
                                                         Survey.reminded_at.is_(None)).values(reminded_at=now))
    if claimed.rowcount != 1:
        raise Conflict("survey.already_reminded", ("本问卷已提醒过一次", "The survey's reminder was sent already"))
    if s.anonymous:
        stmt = select(Invitation.person_id, Invitation.grid).where(Invitation.survey_id == s.id,
                                                                   Invitation.token.is_not(None))
    else:
        stmt = (select(Invitation.person_id, Invitation.grid)
                .join(SurveyToken, (SurveyToken.survey_id == Invitation.survey_id)
                      & (SurveyToken.person_id == Invitation.person_id))
                .where(Invitation.survey_id == s.id, SurveyToken.spent.is_(False)))
    pending = [(pid, grid) for pid, grid in (await session.execute(stmt)).all()]
    record_survey_notices(session, s, "survey.reminder", pending, now)
    await session.refresh(s)
    return s, len(pending)


def invitations_stmt(principal: Principal, s: Survey):
    """The invitations in the caller's places (place staff, for household visits) or all (ops)."""
    if principal.role != "ops" and principal.role not in PLACE_STAFF:
        raise Forbidden(("只有辖区工作人员可以查看邀请名单", "Only place staff see who is invited"),
                        code="survey.not_place_staff")
    stmt = select(Invitation).where(Invitation.survey_id == s.id)
    if principal.role != "ops":
        places = [v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)]
        stmt = stmt.where(or_(false(), *(Invitation.grid.startswith(p) for p in places)))
    return stmt


async def deliver(session: AsyncSession, principal: Principal, survey_id: str, invitation_id: str | None) -> tuple[str, str]:
    """Hand out an invitation's token once: to the invited person (or their proxy), or on a household visit to
    place staff covering the invitation's grid. The invitation keeps no copy afterwards."""
    s = await get_survey(session, principal, survey_id)
    if s.status != "published":
        raise Conflict("survey.closed" if s.status == "closed" else "survey.not_published",
                       ("问卷已结束" if s.status == "closed" else "问卷尚未发布", f"The survey is {s.status}"))
    stmt = select(Invitation).where(Invitation.survey_id == s.id)
    if principal.role in ("resident", "proxy") and principal.person_id:
        inv = (await session.execute(stmt.where(Invitation.person_id == principal.person_id))).scalar_one_or_none()
    elif principal.role in PLACE_STAFF and invitation_id:
        inv = (await session.execute(stmt.where(Invitation.id == invitation_id))).scalar_one_or_none()
        if inv is not None and not principal.covers_place(inv.grid):
            inv = None
    else:
        raise Forbidden(("只有受邀居民本人（或代办人）或入户的工作人员可以领取令牌",
                         "Only the invited person, their proxy, or staff on a household visit take a token"),
                        code="survey.not_invitee")
    if inv is None:
        raise NotFound("survey.invitation_not_found", ("没有该邀请", "No such invitation"))
    token = inv.token
    claimed = await session.execute(update(Invitation).where(Invitation.id == inv.id, Invitation.token.is_not(None))
                                    .values(token=None, delivered=True))
    if token is None or claimed.rowcount != 1:
        raise Conflict("survey.token_delivered", ("令牌已发放，不再重发", "The token was handed out already"))
    return token, inv.id


async def mix(session: AsyncSession, s: Survey) -> None:
    """Re-write, in one transaction, what an anonymous survey's responses wrote as they came in: the responses in
    the order of their random ids, the tallies in the order of their key (with new ids: an autoincrement id says
    which answer values came first) and the tokens in the order of their digests (a spent token's row version
    and place in the heap say when it was spent), so neither row order, ids nor PostgreSQL's row versions keep the
    order they came in; drop the tokens never handed out."""
    postgres = session.bind.dialect.name == "postgresql"
    for model, order, keep_id in ((SurveyResponse, ("id",), True),
                                  (SurveyTally, ("place", "question", "value", "dim", "dim_value"), False),
                                  (SurveyToken, ("digest",), True)):
        # in the database (a quarter's 100,000 responses), ordered bytewise ("C": no locale's collation)
        table = model.__table__.name
        cols = ", ".join(c.name for c in model.__table__.columns if keep_id or not c.primary_key)
        by = ", ".join(f'{k} COLLATE "C"' if postgres else k for k in order)
        await session.execute(text(f"CREATE TEMP TABLE survey_mix AS SELECT {cols} FROM {table} "
                                   "WHERE survey_id = :sid"), {"sid": s.id})
        await session.execute(text(f"DELETE FROM {table} WHERE survey_id = :sid"), {"sid": s.id})
        await session.execute(text(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM survey_mix ORDER BY {by}"))
        await session.execute(text("DROP TABLE survey_mix"))
    await session.execute(update(Invitation).where(Invitation.survey_id == s.id).values(token=None))
