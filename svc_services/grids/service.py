"""The local grid register used to place requests (grid code given, or nearest centre to lat/long)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import Clock
from common.errors import Forbidden, invalid
from common.geo import distance_m
from svc_services.grids.models import ServiceGrid


def check_register(principal: Principal, code: str) -> None:
    """A grid code is 15 digits; community and street staff register grids of their own places, ops any."""
    if len(code) != 15 or not code.isdigit():
        raise invalid("code", "grid.code_invalid", "网格编码应为 15 位数字", "A grid code has 15 digits", where="path")
    if principal.role not in ("community_staff", "street_staff", "ops") or not principal.covers_place(code):
        raise Forbidden(("只能登记本辖区内的网格", "You may only register grids in your scope"))


async def list_grids(session: AsyncSession) -> list[ServiceGrid]:
    return list((await session.execute(select(ServiceGrid).order_by(ServiceGrid.code))).scalars())


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
