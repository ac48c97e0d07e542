from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Response

from common.deps import AppClock, CurrentPrincipal, DbSession
from common.pagination import Page, PageParams
from fastapi import Depends
from svc_residents.deps import Idempotent
from svc_residents.callout import rosters
from svc_residents.callout.models import DutyShift
from svc_residents.callout.schemas import ShiftCreate, ShiftOut, ShiftUpdate
from svc_residents.protection import AppProtection

router = APIRouter(prefix="/residents/v1/rosters", tags=["rosters 值班表"])


@router.post("", status_code=201, response_model=ShiftOut, summary="排班 Add a duty shift")
async def create_shift(idem: Idempotent, body: ShiftCreate, principal: CurrentPrincipal, clock: AppClock,
                       protection: AppProtection):
    now = clock.now()

    async def create(session):
        shift = await rosters.create_shift(session, principal, protection, body, now=now)
        return 201, ShiftOut.model_validate(shift)

    return await idem.run(body, create, now=now)


@router.get("", response_model=Page[ShiftOut], summary="值班表 A place's duty shifts")
async def list_shifts(session: DbSession, principal: CurrentPrincipal,
                      place_code: str = Query(min_length=6, max_length=24),
                      at: datetime | None = Query(None, description="只看该时刻在岗的值班"),
                      page: PageParams = Depends()):
    stmt = rosters.list_stmt(principal, place_code, at)
    rows = (await session.execute(page.keyset(stmt, DutyShift.id))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=ShiftOut.model_validate)


@router.get("/{shift_id}", response_model=ShiftOut, summary="值班记录 A duty shift")
async def get_shift(shift_id: str, session: DbSession, principal: CurrentPrincipal):
    return ShiftOut.model_validate(await rosters.get_shift(session, principal, shift_id))


@router.patch("/{shift_id}", response_model=ShiftOut, summary="调整值班 Change a duty shift")
async def update_shift(shift_id: str, body: ShiftUpdate, session: DbSession, principal: CurrentPrincipal,
                       clock: AppClock, protection: AppProtection):
    async with session.begin():
        shift = await rosters.update_shift(session, principal, protection, shift_id, body, now=clock.now())
        return ShiftOut.model_validate(shift)


@router.delete("/{shift_id}", status_code=204, summary="取消值班 Remove a duty shift")
async def delete_shift(shift_id: str, session: DbSession, principal: CurrentPrincipal,
                       version: int | None = Query(None, ge=1)):
    async with session.begin():
        await rosters.delete_shift(session, principal, shift_id, version)
    return Response(status_code=204)
