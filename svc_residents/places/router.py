from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from common.deps import DbSession
from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.pagination import Page, PageParams
from svc_residents.deps import Idempotent
from svc_residents.places import service
from svc_residents.places.schemas import GridWorkersIn, GridWorkersOut, PlaceCreate, PlaceLevel, PlaceOut

router = APIRouter(prefix="/residents/v1/places", tags=["places 地点"])


@router.post("", status_code=201, response_model=PlaceOut, summary="新建地点 Create a place")
async def create_place(body: PlaceCreate, idem: Idempotent, principal: Principal = Depends(get_principal),
                       clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        place = await service.create_place(session, principal, body, now=now)
        return 201, PlaceOut.model_validate(place)

    return await idem.run(body.model_dump(), create, now=now)


@router.get("", response_model=Page[PlaceOut], summary="地点列表 List places")
async def list_places(session: DbSession, request: Request, parent_code: str | None = None, level: PlaceLevel | None = None,
                      page: PageParams = Depends(), principal: Principal = Depends(get_principal)):
    rows = await service.list_places(session, parent_code=parent_code, level=level,
                                     after=page.after_key(), limit=page.limit)
    return page.page(rows, key=lambda r: r.code, item=PlaceOut.model_validate)


@router.get("/{code}", response_model=PlaceOut, summary="地点详情 Get a place")
async def get_place(session: DbSession, code: str, request: Request, principal: Principal = Depends(get_principal)):
    return PlaceOut.model_validate(await service.get_place(session, code))


@router.get("/{code}/workers", response_model=GridWorkersOut, summary="网格员 A grid's workers")
async def get_grid_workers(session: DbSession, code: str, request: Request, principal: Principal = Depends(get_principal)):
    workers = await service.grid_workers(session, code)
    service.check_see_workers(principal, code)
    return GridWorkersOut(grid_code=code, user_ids=workers)


@router.put("/{code}/workers", response_model=GridWorkersOut, summary="指定网格员 Name a grid's workers")
async def put_grid_workers(session: DbSession, code: str, body: GridWorkersIn, request: Request,
                           principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        workers = await service.set_grid_workers(session, principal, code, body.user_ids, now=clock.now())
        return GridWorkersOut(grid_code=code, user_ids=workers)
