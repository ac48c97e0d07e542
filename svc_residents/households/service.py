"""Households (一户一档): a household sits in a grid (and optionally one of its buildings); its head is a member."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem, invalid
from common.ids import new_id
from common.lookup import get_or_404
from common.outbox import record_event
from common.errors import check_version
from svc_residents import access
from svc_residents.base import OutboxEvent
from svc_residents.households.models import Household
from svc_residents.households.schemas import HouseholdCreate, HouseholdUpdate
from svc_residents.places.models import Place


def not_found() -> Problem:
    return Problem(404, "household.not_found", ("户不存在或无权查看", "Household not found"))


async def check_grid(session: AsyncSession, grid_code: str, field: str = "grid_code") -> Place:
    grid = await session.get(Place, grid_code)
    if grid is None or grid.level != "grid":
        raise invalid(field, "household.grid_unknown", "网格不存在", "Unknown grid")
    return grid


async def check_building(session: AsyncSession, building_code: str, grid_code: str) -> None:
    building = await session.get(Place, building_code)
    if building is None or building.level != "building":
        raise invalid("building_code", "household.building_unknown", "楼栋不存在", "Unknown building")
    if building.parent_code != grid_code:
        raise invalid("building_code", "household.building_grid", "楼栋不在该网格内",
                      "The building is not in this grid")


def household_event(session: AsyncSession, household: Household, change: str, now: datetime, **data) -> None:
    record_event(session, OutboxEvent, "household.changed", subject=household.id,
                 data={"change": change, "version": household.version, **data}, now=now,
                 community=household.community_code, grid=household.grid_code)


def move_member(session: AsyncSession, person, old: Household | None, new: Household, now: datetime, *,
                head: bool = False) -> None:
    """Move a person's one record into another household (`head`: as its head): its places follow, and both
    households get a new version and a household.changed event (member_left / member_added)."""
    person.household_id, person.grid_code, person.community_code = new.id, new.grid_code, new.community_code
    if head:
        new.head_person_id = person.id
    for h, change in ((old, "member_left"), (new, "member_added")):
        if h is None:
            continue
        if change == "member_left" and h.head_person_id == person.id:
            h.head_person_id = None
        h.version += 1
        h.updated_at = now
        household_event(session, h, change, now, person_id=person.id, **({"head": True} if head and h is new else {}))


async def create_household(session: AsyncSession, principal: Principal, body: HouseholdCreate, *,
                           now: datetime, household_id: str | None = None) -> Household:
    access.require_staff(principal)
    if not access.staff_covers(principal, body.grid_code):
        raise Problem(403, "forbidden", ("只能在本辖区内登记户", "You may only register households in your scope"))
    grid = await check_grid(session, body.grid_code)
    if body.building_code:
        await check_building(session, body.building_code, grid.code)
    household = Household(id=household_id or new_id(), address=body.address, grid_code=grid.code, building_code=body.building_code,
                          community_code=grid.parent_code, head_person_id=None, created_at=now, updated_at=now,
                          version=1)
    session.add(household)
    await session.flush()
    household_event(session, household, "created", now)
    return household


async def get_household(session: AsyncSession, principal: Principal, household_id: str, *,
                        for_update: bool = False) -> Household:
    access.require_reader(principal)
    return await get_or_404(session, Household, household_id, not_found(), for_update=for_update,
                            visible=lambda o: access.can_read_household(principal, o))


async def update_household(session: AsyncSession, principal: Principal, household_id: str,
                           body: HouseholdUpdate, *, now: datetime) -> Household:
    from svc_residents.persons import elector_feed
    from svc_residents.persons.models import Person

    access.require_reader(principal)
    household = await get_household(session, principal, household_id, for_update=True)
    access.require_staff(principal)
    check_version(body.version, household.version, "household.version_conflict",
                  ("该户已被他人修改，请刷新后重试", "The household changed; reload and retry"))
    changed = []
    if body.address is not None and body.address != household.address:
        household.address = body.address
        changed.append("address")
    if body.building_code is not None and body.building_code != household.building_code:
        await check_building(session, body.building_code, household.grid_code)
        household.building_code = body.building_code
        changed.append("building_code")
    previous_head = household.head_person_id
    if body.head_person_id is not None and body.head_person_id != household.head_person_id:
        head = await session.get(Person, body.head_person_id)
        if head is None or head.household_id != household.id:
            raise invalid("head_person_id", "household.head_not_member", "户主须为本户成员",
                          "The head must be a member of the household")
        household.head_person_id = head.id
        changed.append("head_person_id")
    if changed:
        household.version += 1
        household.updated_at = now
        household_event(session, household, "updated", now, fields=changed)
    if "building_code" in changed:  # svc_services' electorate: every member's scope, or the heads' flags
        await elector_feed.sync_electors(session, await elector_feed.members(session, household.id), now=now)
    elif "head_person_id" in changed:
        await elector_feed.sync_electors(session, [previous_head, household.head_person_id], now=now)
    await session.flush()
    return household


async def list_households(session: AsyncSession, principal: Principal, *, grid_code: str | None,
                          after: str | None, limit: int) -> list[Household]:
    access.require_reader(principal)
    stmt = (select(Household).where(access.household_visibility(principal, Household))
            .order_by(Household.id).limit(limit + 1))
    if grid_code:
        stmt = stmt.where(Household.grid_code == grid_code)
    if after:
        stmt = stmt.where(Household.id > after)
    return list((await session.execute(stmt)).scalars())
