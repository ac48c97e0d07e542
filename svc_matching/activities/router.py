from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

from common.acting import acts
from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.deps import AppSettings, DbSession
from common.errors import Forbidden
from common.pagination import Page, PageParams
from common.validators import AreaCode, Instant
from svc_matching.activities import service
from svc_matching.activities.models import Activity, ActivitySignup
from svc_matching.activities.schemas import ActivityCreate, ActivityOut, CheckinCreate, SignupCreate, SignupOut, StatusBody
from svc_matching.deps import Idempotent

router = APIRouter(prefix="/matching/v1/activities", tags=["activities 社区活动报名"])


@router.post("", status_code=201, response_model=ActivityOut, summary="发布活动 Publish an activity")
async def create_activity(idem: Idempotent, body: ActivityCreate,
                          principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, ActivityOut.model_validate(await service.create_activity(session, principal, body, now=now))

    return await idem.run(body, create, now=now)


@router.get("", response_model=Page[ActivityOut], summary="活动列表 Activities")
async def list_activities(session: DbSession, page: PageParams = Depends(),
                          place_code: AreaCode | None = Query(None),
                          starts_after: Instant | None = Query(None, description="只列出此时及以后开始的活动"),
                          principal: Principal = Depends(get_principal)):
    stmt = select(Activity)
    if place_code:
        stmt = stmt.where(Activity.place_code.startswith(place_code, autoescape=True))
    if starts_after:
        stmt = stmt.where(Activity.starts_at >= starts_after)
    rows = (await session.execute(page.keyset(stmt, Activity.id))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=ActivityOut.model_validate)


@router.get("/{activity_id}", response_model=ActivityOut, summary="活动详情")
async def get_activity(session: DbSession, activity_id: str, principal: Principal = Depends(get_principal)):
    return ActivityOut.model_validate(await service.get_activity(session, activity_id))


@router.post("/{activity_id}/status", response_model=ActivityOut, summary="取消活动 Cancel an activity")
async def set_status(session: DbSession, activity_id: str, body: StatusBody,
                     principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        return ActivityOut.model_validate(await service.set_status(session, principal, activity_id, body,
                                                                   now=clock.now()))


@router.post("/{activity_id}/signups", status_code=201, response_model=SignupOut, summary="报名 Sign up",
             dependencies=[acts("bookings.sign_up")],
             description="名额已满时默认排队候补（state `waitlisted`），有人取消时按先后转正；`waitlist: false` 则 409。")
async def sign_up(idem: Idempotent, activity_id: str, body: SignupCreate,
                  principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, SignupOut.model_validate(await service.sign_up(session, principal, activity_id, body, now=now))

    return await idem.run(body, create, now=now)


@router.get("/{activity_id}/signups", response_model=Page[SignupOut],
            summary="报名名单（居民：本人的） Sign-ups")
async def list_signups(session: DbSession, activity_id: str, page: PageParams = Depends(),
                       principal: Principal = Depends(get_principal)):
    a = await service.get_activity(session, activity_id)
    stmt = select(ActivitySignup).where(ActivitySignup.activity_id == a.id)
    if not service.manages(principal, a):
        if principal.role not in ("resident", "proxy") or principal.person_id is None:
            raise Forbidden(("无权查看报名名单", "You may not read the sign-ups"), code="activity.not_organiser")
        stmt = stmt.where(ActivitySignup.person_id == principal.person_id)
    rows = (await session.execute(page.keyset(stmt, ActivitySignup.id))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=SignupOut.model_validate)


@router.post("/{activity_id}/signups/{signup_id}/cancel", response_model=SignupOut, summary="取消报名",
             dependencies=[acts("bookings.sign_up")])
async def cancel_signup(session: DbSession, activity_id: str, signup_id: str,
                        principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        return SignupOut.model_validate(await service.cancel_signup(session, principal, activity_id, signup_id,
                                                                    now=clock.now()))


@router.post("/{activity_id}/checkins", status_code=201, response_model=SignupOut,
             summary="现场签到（工作人员或自助机），签到即记积分/志愿时长 Check in at the venue",
             description="同一人再次签到返回 200 与首次结果，不重复记账（记账编号 `activity:<活动>:<居民>`）。")
async def check_in(session: DbSession, activity_id: str, body: CheckinCreate, response: Response,
                   settings: AppSettings, principal: Principal = Depends(get_principal),
                   clock: Clock = Depends(get_clock)):
    async with session.begin():
        s, new = await service.check_in(session, principal, activity_id, body.person_id, now=clock.now(),
                                        kiosks=settings.activity_kiosk_members)
        response.status_code = 201 if new else 200
        return SignupOut.model_validate(s)
