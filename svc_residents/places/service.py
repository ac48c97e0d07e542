"""Rules for the place hierarchy: each level sits under the one above, and codes extend their parent's."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem, invalid
from common.validators import ValidationFailure, parse_division_code
from common.outbox import record_event
from common.errors import NotFound
from common.lookup import get_or_404
from svc_residents.base import OutboxEvent
from svc_residents.places.models import LEVELS, Place
from svc_residents.places.schemas import PlaceCreate

# The digits each level's code has (district 6, street 9, community 12, grid 15, building 18+).
CODE_LENGTH = {"district": 6, "street": 9, "community": 12, "grid": 15}


LEVEL_ZH = {"district": "区", "street": "街道", "community": "社区", "grid": "网格", "building": "楼栋"}


def check_place_code(code: str, level: str | None, *, field: str = "code") -> None:
    """A place code is a GB/T 2260 division code (a real province, a district below a city) extended by three
    local digits per level (street 9, community 12, grid 15), and a building code extends its grid's code by a
    local suffix of at least three digits. `level` None: any place level. 422 naming `field` otherwise."""
    if not code.isdigit():
        raise invalid(field, "place.code_format", "地点编码只能由数字组成", "A place code has digits only")
    division = code[:15] if len(code) > 15 else code
    try:
        parsed = parse_division_code(division)
    except ValidationFailure as exc:
        raise invalid(field, f"place.{exc.code}", exc.message_zh, exc.message_en) from None
    actual = "building" if len(code) > 15 else parsed.level
    if len(code) > 15 and (len(code) < 18 or parsed.level != "grid"):
        raise invalid(field, "place.code_length", "楼栋编码应为网格编码（15 位）加至少 3 位楼栋后缀",
                      "A building code is its grid's 15 digits plus a suffix of at least 3")
    if actual not in LEVEL_ZH:  # a province or city code: not a place the platform manages
        raise invalid(field, "place.code_level", "区划代码须到区（县）一级，如 110105",
                      "A division code must be a district (county), e.g. 110105")
    if level is not None and actual != level:
        want = CODE_LENGTH.get(level)
        raise invalid(field, "place.code_length",
                      f"{LEVEL_ZH[level]}级地点编码应为 {want} 位" if want else "楼栋编码应在网格编码后追加后缀",
                      f"A {level} code has {want} digits" if want else "A building code extends its grid's")
    for end in range(9, min(len(code), 15) + 1, 3):  # each local level's 3 digits: 001–999
        if code[end - 3:end] == "000":
            raise invalid(field, "place.code_segment", "街道、社区、网格的本级编号不能为 000",
                          "A street, community or grid number cannot be 000")
    if len(code) > 15 and set(code[15:]) == {"0"}:
        raise invalid(field, "place.code_segment", "楼栋编号不能全为 0", "A building number cannot be all zeros")


def _check_manage(principal: Principal, code: str, parent_code: str | None) -> None:
    anchor = parent_code or code
    if principal.role not in ("community_staff", "street_staff", "ops") or not principal.covers_place(anchor):
        raise Problem(403, "forbidden", ("只能管理本辖区内的地点", "You may only manage places inside your scope"))


async def create_place(session: AsyncSession, principal: Principal, body: PlaceCreate, *, now: datetime) -> Place:
    _check_manage(principal, body.code, body.parent_code)
    check_place_code(body.code, body.level)
    if body.parent_code is not None:
        check_place_code(body.parent_code, None, field="parent_code")
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
    place = Place(code=body.code, level=body.level, name=body.name, parent_code=body.parent_code, created_at=now)
    session.add(place)
    record_event(session, OutboxEvent, "place.created", subject=place.code,
                 data={"level": place.level, "name": place.name}, now=now,
                 community=place.code[:12] if len(place.code) >= 12 else None,
                 grid=place.code[:15] if len(place.code) >= 15 else None)
    await session.flush()
    return place


async def get_place(session: AsyncSession, code: str) -> Place:
    return await get_or_404(session, Place, code, NotFound("place.not_found", ("地点不存在", "Place not found")))


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
                           user_ids: list[str], *, now: datetime) -> list[str]:
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
    for u, row in current.items():
        if u not in wanted:
            await session.delete(row)
    for u in wanted:
        if u not in current:
            session.add(GridWorker(grid_code=grid.code, user_id=u, created_at=now))
    if set(wanted) != set(current):
        record_event(session, OutboxEvent, "grid.workers_changed", subject=grid.code,
                     data={"workers": sorted(wanted)}, now=now, community=grid.code[:12], grid=grid.code)
    await session.flush()
    return sorted(wanted)
