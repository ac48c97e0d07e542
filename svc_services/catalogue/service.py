"""Rules for the catalogue (事项清单): items are versioned, never edited in place."""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import Clock
from common.errors import Problem
from common.lookup import get_or_404
from common.outbox import record_event
from svc_services.base import OutboxEvent
from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion
from svc_services.catalogue.schemas import ItemContent, ItemCreate, ItemOut, ItemUpdate
from svc_services.codes import CATEGORIES

MANAGER_ROLES = ("community_staff", "street_staff", "dept_staff", "ops")
PLACE_MANAGERS = ("community_staff", "street_staff")


def check_manage(principal: Principal) -> None:
    if principal.role not in MANAGER_ROLES:
        raise Problem(403, "forbidden", ("只有社区、街道、部门工作人员或运维可以维护事项清单",
                                         "Only community, street or department staff and ops may edit the catalogue"))


def may_write(principal: Principal, scope: str | None, department: str) -> bool:
    """Catalogue writes belong to the item's owner and the levels above it (issue 23, finding 3):
    - the owning department (`dept:<department>`), for its items wherever they are offered;
    - community or street staff whose place scope covers the area the item is offered in (a street over its
      communities' items); the district-wide catalogue (scope None) lies above every community and street;
    - ops, for the whole platform.
    A community worker therefore cannot withdraw a department's item or a district-wide one (一键呼叫), which
    every community's residents submit to."""
    if principal.role == "ops":
        return True
    if principal.role == "dept_staff":
        return department in principal.scope_values("dept")
    if principal.role in PLACE_MANAGERS:
        return scope is not None and principal.covers_place(scope)
    return False


def require_owner(principal: Principal, scope: str | None, department: str) -> None:
    # the catalogue is public, so an item the caller may not change is refused (403), not hidden
    if not may_write(principal, scope, department):
        raise Problem(403, "catalogue.not_owner",
                      ("只有事项的主管部门、事项所属辖区及其上级的工作人员或运维可以修改该事项",
                       "Only the item's owning department, staff of its area or above, and ops may change it"))


def to_out(item: CatalogueItem, v: CatalogueItemVersion) -> ItemOut:
    return ItemOut(code=item.code, version=v.version, current_version=item.current_version, active=item.active,
                   scope=item.scope, name=v.name, description=v.description, category=v.category,
                   category_name=CATEGORIES.get(v.category, (v.category,))[0], tier=v.tier, department=v.department,
                   response_hours=v.response_hours, resolution_hours=v.resolution_hours,
                   working_hours=v.working_hours, emergency=v.emergency, kiosk_instant=v.kiosk_instant,
                   personal=v.personal, appointment_required=bool(v.appointment_required),
                   channels=list(v.channels), materials=v.materials, attributes=v.attributes,
                   keywords=list(v.keywords or []), created_at=v.created_at, created_by=v.created_by)


def _version_row(code: str, version: int, body: ItemContent, principal: Principal, now) -> CatalogueItemVersion:
    data = body.model_dump(mode="json")
    return CatalogueItemVersion(
        item_code=code, version=version, name=data["name"], description=data["description"],
        category=data["category"], tier=data["tier"], department=data["department"],
        response_hours=data["response_hours"], resolution_hours=data["resolution_hours"],
        working_hours=data["working_hours"], emergency=data["emergency"], kiosk_instant=data["kiosk_instant"],
        personal=data["personal"], appointment_required=data["appointment_required"], channels=data["channels"],
        materials=data["materials"],
        attributes=sorted(data["attributes"], key=lambda a: a["order"]), keywords=data["keywords"],
        created_at=now, created_by=principal.caller)


def _event(session: AsyncSession, type_: str, v: CatalogueItemVersion, clock: Clock) -> None:
    record_event(session, OutboxEvent, type_, subject=v.item_code, now=clock.now(),
                 data={"code": v.item_code, "version": v.version, "category": v.category, "tier": v.tier,
                       "department": v.department, "channels": v.channels, "emergency": v.emergency,
                       "online": any(c in ("app", "kiosk", "api") for c in v.channels)})


async def create_item(session: AsyncSession, principal: Principal, body: ItemCreate, clock: Clock) -> ItemOut:
    check_manage(principal)
    require_owner(principal, body.scope, body.department)
    if await session.get(CatalogueItem, body.code) is not None:
        raise Problem(409, "catalogue.exists", ("该编码的事项已存在", "An item with this code already exists"))
    now = clock.now()
    item = CatalogueItem(code=body.code, current_version=1, active=True, scope=body.scope, created_at=now,
                         updated_at=now)
    session.add(item)
    await session.flush()
    v = _version_row(body.code, 1, body, principal, now)
    session.add(v)
    _event(session, "catalogue.item_created", v, clock)
    await session.flush()
    return to_out(item, v)


async def update_item(session: AsyncSession, principal: Principal, code: str, body: ItemUpdate,
                      clock: Clock) -> ItemOut:
    check_manage(principal)
    item, current = await get_item(session, code)
    # the owner of the item as it is, and of what it becomes (a department does not hand its item to another)
    require_owner(principal, item.scope, current.department)
    require_owner(principal, item.scope, body.department)
    now = clock.now()
    new_version = body.version + 1
    res = await session.execute(
        update(CatalogueItem).where(CatalogueItem.code == code, CatalogueItem.current_version == body.version)
        .values(current_version=new_version, updated_at=now))
    if res.rowcount != 1:
        raise Problem(409, "version_conflict", ("事项已被他人修改，请刷新后重试",
                                                "The item was changed by someone else; reload and retry"),
                      extra={"current_version": item.current_version})
    v = _version_row(code, new_version, body, principal, now)
    session.add(v)
    _event(session, "catalogue.item_versioned", v, clock)
    await session.flush()
    await session.refresh(item)
    return to_out(item, v)


async def set_active(session: AsyncSession, principal: Principal, code: str, active: bool, clock: Clock) -> ItemOut:
    check_manage(principal)
    item, v = await get_item(session, code)
    require_owner(principal, item.scope, v.department)
    item.active = active
    item.updated_at = clock.now()
    _event(session, "catalogue.item_activated" if active else "catalogue.item_withdrawn", v, clock)
    await session.flush()
    return to_out(item, v)


async def get_item(session: AsyncSession, code: str, version: int | None = None) -> tuple[CatalogueItem,
                                                                                          CatalogueItemVersion]:
    item = await get_or_404(session, CatalogueItem, code,
                            Problem(404, "catalogue.not_found", ("事项不存在", "Catalogue item not found")))
    v = await get_or_404(session, CatalogueItemVersion, (code, version or item.current_version),
                         Problem(404, "catalogue.version_not_found", ("该事项版本不存在", "No such version of the item")))
    return item, v


async def list_items(session: AsyncSession, *, category: str | None, channel: str | None, active: bool | None,
                     after: str | None, limit: int) -> list[ItemOut]:
    stmt = (select(CatalogueItem, CatalogueItemVersion)
            .join(CatalogueItemVersion, (CatalogueItemVersion.item_code == CatalogueItem.code)
                  & (CatalogueItemVersion.version == CatalogueItem.current_version))
            .order_by(CatalogueItem.code))
    if category:
        stmt = stmt.where(CatalogueItemVersion.category == category)
    if active is not None:
        stmt = stmt.where(CatalogueItem.active.is_(active))
    if after:
        stmt = stmt.where(CatalogueItem.code > after)
    out: list[ItemOut] = []
    # channel lives in a JSON list: filter in Python, reading on until the page is full.
    for item, v in (await session.execute(stmt)).all():
        if channel and channel not in v.channels:
            continue
        out.append(to_out(item, v))
        if len(out) > limit:
            break
    return out


async def list_versions(session: AsyncSession, code: str) -> list[ItemOut]:
    item = await get_or_404(session, CatalogueItem, code,
                            Problem(404, "catalogue.not_found", ("事项不存在", "Catalogue item not found")))
    rows = (await session.execute(select(CatalogueItemVersion).where(CatalogueItemVersion.item_code == code)
                                  .order_by(CatalogueItemVersion.version))).scalars()
    return [to_out(item, v) for v in rows]
