"""The grid register's HTTP layer (rules in `svc_services.grids.service`)."""
from __future__ import annotations

from fastapi import APIRouter

from common.deps import AppClock, CurrentPrincipal, DbSession
from svc_services.grids import service
from svc_services.grids.schemas import GridIn, GridOut
from svc_services.requests.group_commit import Intake

router = APIRouter(prefix="/services/v1/grids", tags=["grids 网格"])


@router.get("", response_model=list[GridOut], summary="网格列表 Grids known to the service")
async def list_grids(session: DbSession, principal: CurrentPrincipal):
    return await service.list_grids(session)


@router.put("/{code}", response_model=GridOut, summary="登记网格 Register or update a grid")
async def put_grid(code: str, body: GridIn, session: DbSession, principal: CurrentPrincipal, clock: AppClock,
                   intake: Intake):
    service.check_register(principal, code)
    async with session.begin():
        grid = await service.upsert_grid(session, code, body.name, body.lat, body.long, clock)
    intake.lookups.forget_centres()  # intake's snapshot of grid centres (requests.intake)
    return grid
