from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from common.deps import DbSession
from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.errors import request_language
from common.pagination import Page, PageParams
from svc_residents.registrations import service
from svc_residents.registrations.schemas import DecisionIn, RegistrationOut, RegistrationStatus

router = APIRouter(prefix="/residents/v1/registrations", tags=["registrations 待核实登记"])


@router.get("", response_model=Page[RegistrationOut],
            summary="待核实的登记（身份证号已有档案） Registrations waiting for confirmation")
async def list_registrations(session: DbSession, request: Request, status: RegistrationStatus | None = Query(None),
                             page: PageParams = Depends(), principal: Principal = Depends(get_principal)):
    lang = request_language(request)
    rows = await service.list_registrations(session, principal, status=status, after=page.after_key(),
                                            limit=page.limit)
    return page.page(rows, key=lambda row: row[0].id,
                     item=lambda row: service.registration_out(row[0], principal, row[1], lang))


@router.post("/{registration_id}/confirm", response_model=RegistrationOut,
             summary="确认登记：档案迁入该户 Confirm: the person's one record moves into the household")
async def confirm(session: DbSession, registration_id: str, body: DecisionIn, request: Request,
                  principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        reg, person = await service.confirm(session, principal, registration_id, body.note, clock.now())
        return service.registration_out(reg, principal, person, request_language(request))


@router.post("/{registration_id}/refuse", response_model=RegistrationOut, summary="不予确认 Refuse the registration")
async def refuse(session: DbSession, registration_id: str, body: DecisionIn, request: Request,
                 principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        reg, person = await service.refuse(session, principal, registration_id, body.note, clock.now())
        return service.registration_out(reg, principal, person, request_language(request))
