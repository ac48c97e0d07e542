from __future__ import annotations

import json
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request, Response

from common.deps import AppClock, AppDb, AppSettings, CurrentPrincipal, DbSession
from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.pagination import Page, PageParams
from svc_residents import grants as exchange_grants
from svc_residents.deps import Idempotent
from svc_residents.clients import MatchingClient, ServicesClient
from svc_residents.households import exchange, service
from svc_residents.households.models import Household
from svc_residents.households.schemas import HouseholdCreate, HouseholdOut, HouseholdUpdate
from svc_residents.persons.schemas import PersonOut

router = APIRouter(prefix="/residents/v1/households", tags=["households 户"])


class HouseholdDetail(HouseholdOut):
    members: list[PersonOut]


@router.post("", status_code=201, response_model=HouseholdOut, summary="登记户 Register a household")
async def create_household(idem: Idempotent, body: HouseholdCreate, principal: Principal = Depends(get_principal),
                           clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, HouseholdOut.model_validate(await service.create_household(session, principal, body, now=now))

    return await idem.run(body.model_dump(), create, now=now)


@router.get("", response_model=Page[HouseholdOut], summary="户列表 List households in scope")
async def list_households(session: DbSession, request: Request, grid_code: str | None = None, page: PageParams = Depends(),
                          principal: Principal = Depends(get_principal)):
    rows = await service.list_households(session, principal, grid_code=grid_code,
                                         after=page.after_key(), limit=page.limit)
    return page.page(rows, key=lambda r: r.id, item=HouseholdOut.model_validate)


@router.get("/{household_id}", response_model=HouseholdDetail, summary="户详情（含成员，脱敏）Household with members")
async def get_household(db: AppDb, household_id: str, request: Request, grants: exchange_grants.AppGrants, principal: Principal = Depends(get_principal),
                        clock: Clock = Depends(get_clock)):
    from sqlalchemy import select

    from svc_residents.persons.models import Person
    from svc_residents.persons.service import person_out, tags_for

    now = clock.now()
    if principal.role in exchange_grants.GRANT_ROLES:  # a department or member system: only under a grant
        grant = await exchange_grants.grant_for(grants, principal, request.headers, now,
                                                exchange_grants.HOUSEHOLDS_RESOURCE)
        purpose = request.headers.get(exchange_grants.PURPOSE_HEADER)
        async with db.session() as session, session.begin():
            household = await session.get(Household, household_id)
            if household is None:
                raise service.not_found()
            out = exchange.view(session, principal, grant, household,
                                unquote(purpose, errors="replace") if purpose else None, now=now)
        return Response(json.dumps(out, ensure_ascii=False, default=str), media_type="application/json",
                        headers={"Cache-Control": "no-store"})
    async with db.session() as session:
        household = await service.get_household(session, principal, household_id)
        members = list((await session.execute(select(Person).where(Person.household_id == household.id,
                                                                   Person.merged_into.is_(None))
                                              .order_by(Person.id))).scalars())
        tags = await tags_for(session, [m.id for m in members])
    return HouseholdDetail(**HouseholdOut.model_validate(household).model_dump(),
                           members=[person_out(m, tags.get(m.id, []), now=now) for m in members])


@router.get("/{household_id}/file", summary="一户一档：户、成员与标签、诉求、匹配与时间银行 Household file",
            description="诉求（svc_services）、匹配与时间银行（svc_matching）各为一部分；某服务不可用时该部分为 "
                        "{\"status\": \"unavailable\", \"reason\": …}，其余照常返回。")
async def get_household_file(household_id: str, db: AppDb, settings: AppSettings, services: ServicesClient,
                             matching: MatchingClient, principal: CurrentPrincipal, clock: AppClock):
    from svc_residents.households.file import household_file

    return await household_file(db, principal, household_id, services=services, matching=matching,
                                max_pages=settings.upstream_max_pages, now=clock.now())


@router.patch("/{household_id}", response_model=HouseholdOut, summary="修改户（地址、楼栋、户主）Update a household")
async def update_household(session: DbSession, household_id: str, body: HouseholdUpdate, request: Request,
                           principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        household = await service.update_household(session, principal, household_id, body, now=clock.now())
        return HouseholdOut.model_validate(household)
