"""Rules for the place hierarchy: each level sits under the one above, and codes extend their parent's."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import utcnow
from common.errors import Problem, invalid
from common.outbox import record_event
from svc_residents.base import OutboxEvent
from svc_residents.places.models import LEVELS, Place
from svc_residents.places.schemas import PlaceCreate

# The digits each level's code has (district 6, street 9, community 12, grid 15, building 18+).
CODE_LENGTH = {"district": 6, "street": 9, "community": 12, "grid": 15}


def _check_manage(principal: Principal, code: str, parent_code: str | None) -> None:
    anchor = parent_code or code
    if principal.role not in ("community_staff", "street_staff", "ops") or not principal.covers_place(anchor):
        raise Problem(403, "forbidden", ("只能管理本辖区内的地点", "You may only manage places inside your scope"))


async def create_place(session: AsyncSession, principal: Principal, body: PlaceCreate) -> Place:
    _check_manage(principal, body.code, body.parent_code)
    want = CODE_LENGTH.get(body.level)
    if want is not None and len(body.code) != want:
        raise invalid("code", "place.code_length", f"{body.level} 级地点编码应为 {want} 位",
                      f"A {body.level} code has {want} digits")
    if body.level == "building" and len(body.code) <= 15:
        raise invalid("code", "place.code_length", "楼栋编码应在网格编码后追加后缀", "A building code extends its grid's")
    if body.level == "district":
        if body.parent_code is not None:
            raise invalid("parent_code", "place.parent", "区级地点不应有上级", "A district has no parent")
    else:
        if body.parent_code is None:
            raise invalid("parent_code", "place.parent_required", "必须指定上级地点", "A parent place is required")
        parent = await session.get(Place, body.parent_code)
        if parent is None:
            raise invalid("parent_code", "place.parent_unknown", "上级地点不存在", "Unknown parent place")
        if LEVELS.index(parent.level) != LEVELS.index(body.level) - 1:
            raise invalid("parent_code", "place.parent_level", f"{body.level} 的上级应为 "
                          f"{LEVELS[LEVELS.index(body.level) - 1]}", "The parent is at the wrong level")
        if not body.code.startswith(parent.code):
            raise invalid("code", "place.code_prefix", "地点编码须以上级编码开头", "A code must extend its parent's code")
    if await session.get(Place, body.code) is not None:
        raise Problem(409, "place.exists", ("该编码的地点已存在", "A place with this code already exists"))
    now = utcnow()
    place = Place(code=body.code, level=body.level, name=body.name, parent_code=body.parent_code, created_at=now)
    session.add(place)
    record_event(session, OutboxEvent, "place.created", subject=place.code,
                 data={"level": place.level, "name": place.name},
                 community=place.code[:12] if len(place.code) >= 12 else None,
                 grid=place.code[:15] if len(place.code) >= 15 else None)
    await session.flush()
    return place


async def get_place(session: AsyncSession, code: str) -> Place:
    place = await session.get(Place, code)
    if place is None:
        raise Problem(404, "place.not_found", ("地点不存在", "Place not found"))
    return place


async def list_places(session: AsyncSession, *, parent_code: str | None, level: str | None, after: str | None,
                      limit: int) -> list[Place]:
    stmt = select(Place).order_by(Place.code).limit(limit + 1)
    if parent_code:
        stmt = stmt.where(Place.parent_code == parent_code)
    if level:
        stmt = stmt.where(Place.level == level)
    if after:
        stmt = stmt.where(Place.code > after)
    return list((await session.execute(stmt)).scalars())


async def grid_workers(session: AsyncSession, grid_code: str) -> list[str]:
    from svc_residents.places.models import GridWorker

    grid = await get_place(session, grid_code)
    if grid.level != "grid":
        raise Problem(404, "place.not_a_grid", ("该地点不是网格", "This place is not a grid"))
    rows = await session.execute(select(GridWorker.user_id).where(GridWorker.grid_code == grid_code)
                                 .order_by(GridWorker.user_id))
    return list(rows.scalars())


def check_see_workers(principal: Principal, grid_code: str) -> None:
    """Who staffs a grid (staff account ids) is for the staff of that place and ops, not for everyone."""
    from svc_residents.access import staff_covers

    if not staff_covers(principal, grid_code):
        raise Problem(403, "forbidden", ("只能查看本辖区网格的网格员", "You may only see the workers of grids in your scope"))


async def set_grid_workers(session: AsyncSession, principal: Principal, grid_code: str,
                           user_ids: list[str]) -> list[str]:
    """Replace the grid's workers; only community/street staff covering the grid (or ops) may name them."""
    from svc_residents.places.models import GridWorker

    grid = await get_place(session, grid_code)
    if principal.role not in ("community_staff", "street_staff", "ops") or not principal.covers_place(grid.code):
        raise Problem(403, "forbidden", ("只能为本辖区内的网格指定网格员", "You may only staff grids inside your scope"))
    if grid.level != "grid":
        raise Problem(404, "place.not_a_grid", ("该地点不是网格", "This place is not a grid"))
    wanted = []
    for i, u in enumerate(user_ids):
        u = u.strip()
        if not u or len(u) > 64:
            raise invalid(f"user_ids.{i}", "grid.worker_invalid", "网格员标识不能为空且不超过 64 个字符",
                          "A worker id is 1–64 characters")
        if u not in wanted:
            wanted.append(u)
    current = {w.user_id: w for w in (await session.execute(
        select(GridWorker).where(GridWorker.grid_code == grid.code))).scalars()}
    now = utcnow()
    for u, row in current.items():
        if u not in wanted:
            await session.delete(row)
    for u in wanted:
        if u not in current:
            session.add(GridWorker(grid_code=grid.code, user_id=u, created_at=now))
    if set(wanted) != set(current):
        record_event(session, OutboxEvent, "grid.workers_changed", subject=grid.code,
                     data={"workers": sorted(wanted)}, community=grid.code[:12], grid=grid.code)
    await session.flush()
    return sorted(wanted)
