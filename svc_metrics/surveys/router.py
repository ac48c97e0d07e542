from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from sqlalchemy import select

from common.acting import acts
from common.auth import Principal, get_principal, require_roles
from common.clock import Clock, get_clock
from common.deps import AppSettings, DbSession
from common.pagination import Page, PageParams
from common.validators import AreaCode, SurveyScopeCode
from svc_metrics.deps import Idempotent
from svc_metrics.kpis.service import READ_ROLES, check_scope
from svc_metrics.surveys import lifecycle, responding, results, service
from svc_metrics.surveys.models import Invitation, Survey
from svc_metrics.surveys.schemas import (
    InvitationOut, InvitationsOut, RemindersOut, ResponseIn, ResponseOut, SurveyCreate, SurveyOut, SurveyUpdate, TokenOut, TokenRequest,
    TransitionBody,
)

router = APIRouter(prefix="/metrics/v1/surveys", tags=["surveys 满意度测评与需求调研"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _out(principal: Principal, s: Survey) -> SurveyOut:
    return SurveyOut.model_validate(s).model_copy(update={"status_zh": lifecycle.STATE_ZH[s.status],
                                                          "allowed_actions": service.actions_for(principal, s)})


@router.post("", status_code=201, response_model=SurveyOut, summary="新建问卷（草稿） Create a survey (draft)")
async def create_survey(idem: Idempotent, body: SurveyCreate, principal: Principal = Depends(get_principal),
                        clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, _out(principal, await service.create(session, principal, body, now))

    return await idem.run(body, create, now=now)


@router.get("", response_model=Page[SurveyOut], summary="问卷列表 Surveys (newest first)")
async def list_surveys(session: DbSession, page: PageParams = Depends(),
                       status: Literal["draft", "published", "closed"] | None = None,
                       scope: AreaCode | None = Query(None),
                       principal: Principal = Depends(get_principal)):
    stmt = select(Survey).where(service.visible_clause(principal))
    if status:
        stmt = stmt.where(Survey.status == status)
    if scope:
        stmt = stmt.where(Survey.scope.startswith(scope))
    rows = (await session.execute(page.keyset(stmt, Survey.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=lambda r: _out(principal, r))


@router.get("/{survey_id}", response_model=SurveyOut, summary="问卷 A survey")
async def get_survey(session: DbSession, survey_id: str, principal: Principal = Depends(get_principal)):
    return _out(principal, await service.get_survey(session, principal, survey_id))


@router.put("/{survey_id}", response_model=SurveyOut, summary="修改草稿 Edit a draft (a published one never changes)")
async def edit_survey(session: DbSession, survey_id: str, body: SurveyUpdate, principal: Principal = Depends(get_principal)):
    async with session.begin():
        s = await service.edit(session, principal, survey_id, body)
    return _out(principal, s)


@router.post("/{survey_id}/revisions", status_code=201, response_model=SurveyOut,
             summary="新建修订版（草稿） A new revision of the questionnaire, as a draft")
async def revise_survey(idem: Idempotent, survey_id: str, principal: Principal = Depends(get_principal),
                        clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, _out(principal, await service.revise(session, principal, survey_id, now))

    return await idem.run({}, create, now=now)


@router.post("/{survey_id}/transitions", response_model=SurveyOut, summary="发布 / 结束 Publish or close")
async def transition(session: DbSession, survey_id: str, body: TransitionBody, settings: AppSettings,
                     principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        s = await service.transition(session, principal, survey_id, body.action, body.version, clock.now(),
                                     floor=settings.satisfaction_floor, min_group=settings.survey_min_group)
    return _out(principal, s)


@router.post("/{survey_id}/invitations", status_code=201, response_model=InvitationsOut,
             summary="抽样并发放邀请 Draw the sample and invite (once)",
             description="邀请记录在册，每人一枚一次性令牌（居民在应用中领取；入户时由工作人员代领），并经 svc_residents "
                         "的通知渠道告知受邀人如何作答（通知中不含令牌）。")
async def invite(session: DbSession, survey_id: str, settings: AppSettings, principal: Principal = Depends(get_principal),
                 clock: Clock = Depends(get_clock)):
    async with session.begin():
        s, strata = await service.invite(session, principal, survey_id, settings.survey_min_group, clock.now())
    return InvitationsOut(survey_id=s.id, invited=s.invited, strata=strata)


@router.post("/{survey_id}/reminders", status_code=201, response_model=RemindersOut,
             summary="提醒尚未作答的受邀居民（一次） Remind the invitees not known to be done (once)",
             description="实名问卷：提醒令牌未用的受邀人；匿名问卷：只能提醒尚未领取令牌的受邀人（系统不知道谁已作答）。"
                         "每份问卷只提醒一次（再次提醒 409 `survey.already_reminded`）。")
async def remind(session: DbSession, survey_id: str, principal: Principal = Depends(get_principal),
                 clock: Clock = Depends(get_clock)):
    async with session.begin():
        s, reminded = await service.remind(session, principal, survey_id, clock.now())
    return RemindersOut(survey_id=s.id, reminded=reminded, reminded_at=s.reminded_at)


@router.get("/{survey_id}/invitations", response_model=Page[InvitationOut],
            summary="邀请名单（入户用） Who is invited, in the caller's places")
async def list_invitations(session: DbSession, survey_id: str, page: PageParams = Depends(),
                           principal: Principal = Depends(get_principal)):
    stmt = service.invitations_stmt(principal, await service.get_survey(session, principal, survey_id))
    rows = (await session.execute(page.keyset(stmt, Invitation.id))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=InvitationOut.model_validate)


@router.post("/{survey_id}/invitations/token", response_model=TokenOut,
             dependencies=[acts("surveys.respond")],
             summary="领取一次性令牌 Take the one-time token (once)")
async def take_token(session: DbSession, survey_id: str, body: TokenRequest, principal: Principal = Depends(get_principal)):
    async with session.begin():
        token, invitation_id = await service.deliver(session, principal, survey_id, body.invitation_id)
    return TokenOut(token=token, invitation_id=invitation_id)


@router.post("/{survey_id}/responses", status_code=201, response_model=ResponseOut,
             dependencies=[acts("surveys.respond")],
             summary="提交答卷（应用、一体机、入户） Submit a response (app, kiosk, household visit)",
             description="一枚令牌只能作答一次（重复提交 409 `survey.token_spent`）。匿名问卷不记录作答人、时间或令牌，"
                         "故不接受 Idempotency-Key（其记录会把调用者与答卷联系起来）。")
async def respond(session: DbSession, survey_id: str, body: ResponseIn, principal: Principal = Depends(get_principal),
                  clock: Clock = Depends(get_clock)):
    async with session.begin():
        s, r, needs = await responding.respond(session, principal, survey_id, body, clock.now())
    return ResponseOut(survey_id=s.id, channel=r.channel, anonymous=s.anonymous, needs=needs)


@router.get("/{survey_id}/results", summary="问卷结果 Results by scope and sub-group (JSON or XLSX)",
            responses={200: {"content": {"application/json": {}, XLSX: {"schema": {"type": "string",
                                                                                      "format": "binary"}}}}})
async def survey_results(session: DbSession, survey_id: str, settings: AppSettings,
                         scope: SurveyScopeCode | None = Query(None),
                         by: Literal["grid", "community", "age_band", "group", "channel"] | None = None,
                         format: Literal["json", "xlsx"] = "json",
                         principal: Principal = Depends(require_roles(*READ_ROLES))):
    s = await service.get_survey(session, principal, survey_id)
    scope = check_scope(principal, scope or s.scope)
    if not scope.startswith(s.scope):
        scope = s.scope if s.scope.startswith(scope) or scope == "all" else scope
    res = await results.results(session, s, scope, by, settings.survey_min_group)
    if format == "xlsx":
        return Response(results.to_xlsx(res), media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="survey_{s.id}.xlsx"'})
    return res
