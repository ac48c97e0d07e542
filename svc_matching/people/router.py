from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from common.deps import DbSession
from common.auth import Principal, get_principal, require_roles
from common.clock import Clock, get_clock
from common.pagination import Page, PageParams
from svc_matching.access import place_condition
from svc_matching.deps import Idempotent
from svc_matching.people import service
from svc_matching.people.models import Need
from svc_matching.people.schemas import (
    HoursOfferCreate, HoursOfferOut, NeedCreate, NeedOut, VolunteerCreate, VolunteerOut,
)

NeedStatus = Literal["open", "offered", "matched", "completed", "unmatched", "cancelled"]

router = APIRouter(prefix="/matching/v1", tags=["volunteers & needs 志愿者与需求"])


@router.post("/volunteers", status_code=201, response_model=VolunteerOut, summary="登记志愿者 Register a volunteer")
async def create_volunteer(idem: Idempotent, body: VolunteerCreate,
                           principal: Principal = Depends(require_roles("community_staff", "street_staff",
                                                                        "grid_worker", "ops")),
                           clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, VolunteerOut.model_validate(
            await service.create_volunteer(session, principal, body, now))
    return await idem.run(body.model_dump(), create, now=now)


@router.get("/volunteers/{volunteer_id}", response_model=VolunteerOut, summary="志愿者详情 Get a volunteer")
async def get_volunteer(session: DbSession, volunteer_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return VolunteerOut.model_validate(await service.get_volunteer(session, volunteer_id, principal))


@router.post("/volunteers/{volunteer_id}/hours_offers", status_code=201, response_model=HoursOfferOut,
             summary="登记可服务时长 Pledge volunteer hours for a period")
async def offer_hours(idem: Idempotent, volunteer_id: str, body: HoursOfferCreate,
                      principal: Principal = Depends(get_principal),
                      clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, HoursOfferOut.model_validate(
            await service.offer_hours(session, principal, volunteer_id, body, now))
    return await idem.run(body, create, now=now)


@router.post("/needs", status_code=201, response_model=NeedOut, summary="登记需求 Record a need")
async def create_need(idem: Idempotent, body: NeedCreate, principal: Principal = Depends(get_principal),
                      clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, NeedOut.model_validate(await service.create_need(session, principal, body, now))
    return await idem.run(body.model_dump(), create, now=now)


@router.get("/needs/{need_id}", response_model=NeedOut, summary="需求详情 Get a need")
async def get_need(session: DbSession, need_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return NeedOut.model_validate(await service.get_need(session, principal, need_id))


@router.get("/needs", response_model=Page[NeedOut], summary="需求清单 List needs")
async def list_needs(session: DbSession, request: Request, status: NeedStatus | None = None,
                     category: str | None = None, place_code: str | None = None, page: PageParams = Depends(),
                     principal: Principal = Depends(require_roles(*service.NEED_STAFF))):
    # staff see the needs of their places, ops all (svc_matching/access.py)
    stmt = select(Need).where(place_condition(principal, Need.place_code))
    if status:
        stmt = stmt.where(Need.status == status)
    if category:
        stmt = stmt.where(Need.category == category)
    if place_code:
        stmt = stmt.where(Need.place_code.startswith(place_code, autoescape=True))
    rows = list((await session.execute(page.keyset(stmt, Need.id))).scalars())
    return page.page(rows, key=lambda r: r.id, item=NeedOut.model_validate)


# svc_metrics' survey needs (named answers → needs with source survey; anonymous demand), docs/adr/0019
from svc_matching.survey_needs.router import router as _survey_needs_router  # noqa: E402

router.include_router(_survey_needs_router)
