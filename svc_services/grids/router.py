"""The local grid register used to place requests (grid code given, or nearest centre to lat/long)."""
from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.errors import Problem
from svc_services.grids.models import ServiceGrid

router = APIRouter(prefix="/services/v1/grids", tags=["grids 网格"])


class GridIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    lat: float | None = Field(default=None, ge=-90, le=90)
    long: float | None = Field(default=None, ge=-180, le=180)


class GridOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    community_code: str
    lat: float | None
    long: float | None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    r = 6371000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


async def upsert_grid(session: AsyncSession, code: str, name: str, lat: float | None, long: float | None,
                      clock: Clock) -> ServiceGrid:
    grid = await session.get(ServiceGrid, code)
    if grid is None:
        grid = ServiceGrid(code=code, community_code=code[:12])
        session.add(grid)
    grid.name, grid.lat, grid.long, grid.updated_at = name, lat, long, clock.now()
    await session.flush()
    return grid


async def nearest_grid(session: AsyncSession, lat: float, long: float, radius_m: float) -> ServiceGrid | None:
    return nearest_of(await located_grids(session), lat, long, radius_m)


async def located_grids(session: AsyncSession) -> list[ServiceGrid]:
    return list((await session.execute(select(ServiceGrid).where(ServiceGrid.lat.is_not(None)))).scalars())


def nearest_of(grids, lat: float, long: float, radius_m: float) -> ServiceGrid | None:
    """The grid whose centre is nearest to (lat, long) within `radius_m`, or None."""
    best, best_d = None, radius_m
    for g in grids:
        d = distance_m(lat, long, g.lat, g.long)
        if d <= best_d:
            best, best_d = g, d
    return best


@router.get("", response_model=list[GridOut], summary="网格列表 Grids known to the service")
async def list_grids(request: Request, principal: Principal = Depends(get_principal)):
    async with request.app.state.db.session() as session:
        return list((await session.execute(select(ServiceGrid).order_by(ServiceGrid.code))).scalars())


@router.put("/{code}", response_model=GridOut, summary="登记网格 Register or update a grid")
async def put_grid(code: str, body: GridIn, request: Request, principal: Principal = Depends(get_principal),
                   clock: Clock = Depends(get_clock)):
    if len(code) != 15 or not code.isdigit():
        raise Problem(422, "validation_failed", ("网格编码应为 15 位数字", "A grid code has 15 digits"))
    if principal.role not in ("community_staff", "street_staff", "ops") or not principal.covers_place(code):
        raise Problem(403, "forbidden", ("只能登记本辖区内的网格", "You may only register grids in your scope"))
    async with request.app.state.db.session() as session, session.begin():
        grid = await upsert_grid(session, code, body.name, body.lat, body.long, clock)
    request.app.state.intake.lookups.forget_centres()  # intake's snapshot of grid centres (requests.intake)
    return grid
