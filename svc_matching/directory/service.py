"""Rules for the resource directory: validated USCC, known taxonomy terms, sane schedules and capacity."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem, invalid
from common.ids import new_id
from common.outbox import record_event
from common.errors import NotFound, check_version
from common.lookup import get_or_404
from svc_matching.base import OutboxEvent
from svc_matching.directory.models import (
    Location, Organization, Schedule, Service, ServiceAtLocation, ServiceAttribute, ServiceCapacity, TaxonomyTerm,
)
from svc_matching.directory.schemas import LocationCreate, OrganizationCreate, ServiceCreate, TaxonomyTermCreate
from svc_matching.geo import minutes

DIRECTORY_ROLES = ("community_staff", "street_staff", "dept_staff", "ops")


async def resolve_terms(session: AsyncSession, taxonomy: str, codes: list[str], field: str, *,
                        single: bool = False) -> list[TaxonomyTerm]:
    """The terms for `codes`, or a 422 naming the first unknown one."""
    if not codes:
        return []
    found = {t.code: t for t in (await session.execute(
        select(TaxonomyTerm).where(TaxonomyTerm.taxonomy == taxonomy, TaxonomyTerm.code.in_(codes)))).scalars()}
    for i, c in enumerate(codes):
        if c not in found:
            what = "服务类别" if taxonomy == "category" else "服务对象群体"
            raise invalid(field if single else f"{field}.{i}", "taxonomy.unknown_term", f"未知的{what}：{c}",
                          f"Unknown {taxonomy} term: {c}")
    return [found[c] for c in dict.fromkeys(codes)]


async def create_term(session: AsyncSession, body: TaxonomyTermCreate, *, now: datetime) -> TaxonomyTerm:
    exists = (await session.execute(select(TaxonomyTerm).where(
        TaxonomyTerm.taxonomy == body.taxonomy, TaxonomyTerm.code == body.code))).scalar_one_or_none()
    if exists:
        raise Problem(409, "taxonomy.exists", ("该分类代码已存在", "This taxonomy term already exists"))
    if body.parent_id is not None:  # "" too: an empty id names no parent (it failed the foreign key)
        parent = await session.get(TaxonomyTerm, body.parent_id)
        if parent is None or parent.taxonomy != body.taxonomy:
            raise invalid("parent_id", "taxonomy.parent_unknown", "上级分类不存在", "Unknown parent term")
    term = TaxonomyTerm(id=new_id(), created_at=now, **body.model_dump())
    session.add(term)
    await session.flush()
    return term


async def create_organization(session: AsyncSession, principal: Principal, body: OrganizationCreate,
                              *, now: datetime, org_id: str | None = None) -> Organization:
    uscc = body.uscc  # already checked and normalised by common.validators.USCC
    if body.community and principal.role not in ("ops", "dept_staff") and not principal.covers_place(body.community):
        raise Problem(403, "forbidden", ("只能登记本辖区的机构", "You may only register organisations in your scope"))
    if (await session.execute(select(Organization).where(Organization.uscc == uscc))).scalar_one_or_none():
        raise Problem(409, "organization.exists", ("该统一社会信用代码的机构已登记",
                                                   "An organisation with this code is already registered"))
    org = Organization(id=org_id or new_id(), created_at=now, updated_at=now,
                       **{**body.model_dump(), "uscc": uscc})
    session.add(org)
    await session.flush()
    return org


async def check_org_scope(session: AsyncSession, principal: Principal, org_id: str) -> None:
    """Community and street staff change only organisations of their places (the organisation's community, or
    where its locations are), as for registering one and withdrawing its services; departments and ops anywhere
    (issue 23: 安康's staff added locations and services to 幸福's organisations)."""
    if principal.role not in ("community_staff", "street_staff"):
        return
    org = await session.get(Organization, org_id)
    if org is None:
        return  # unknown: answered as before (404 / 422)
    places = [org.community] + [p for (p,) in await session.execute(
        select(Location.place_code).where(Location.organization_id == org.id))]
    if not any(principal.covers_place(p) for p in places if p):
        raise Problem(403, "forbidden", ("只能管理本辖区的机构", "Only organisations within your scope"))


async def get_organization(session: AsyncSession, org_id: str) -> Organization:
    return await get_or_404(session, Organization, org_id,
                            NotFound("organization.not_found", ("机构不存在", "Organisation not found")))


async def create_location(session: AsyncSession, org_id: str, body: LocationCreate,
                          *, now: datetime, location_id: str | None = None) -> Location:
    await get_organization(session, org_id)
    loc = Location(id=location_id or new_id(), organization_id=org_id, created_at=now, **body.model_dump())
    session.add(loc)
    await session.flush()
    return loc


def check_windows(windows: list, field: str) -> None:
    for i, w in enumerate(windows):
        if minutes(w.closes_at) <= minutes(w.opens_at):
            raise invalid(f"{field}.{i}.closes_at", "window.end_before_start", "结束时间须晚于开始时间",
                          "The window must end after it starts")


async def create_service(session: AsyncSession, body: ServiceCreate, *, now: datetime,
                         service_id: str | None = None) -> Service:
    org = await session.get(Organization, body.organization_id)
    if org is None:
        raise invalid("organization_id", "organization.unknown", "机构不存在", "Unknown organisation")
    if body.minimum_age is not None and body.maximum_age is not None and body.maximum_age < body.minimum_age:
        raise invalid("maximum_age", "age.range", "最大年龄不得小于最小年龄", "maximum_age is below minimum_age")
    check_windows(body.schedules, "schedules")
    cats = await resolve_terms(session, "category", body.categories, "categories")
    elig = await resolve_terms(session, "eligibility", body.eligibility, "eligibility")
    for i, lid in enumerate(body.location_ids):
        await get_or_404(session, Location, lid, invalid(f"location_ids.{i}", "location.unknown", "地点不存在或不属于该机构",
                                                         "Unknown location, or it belongs to another organisation"),
                         visible=lambda loc: loc.organization_id == org.id)
    data = body.model_dump(exclude={"categories", "eligibility", "location_ids", "schedules", "capacity"})
    svc = Service(id=service_id or new_id(), created_at=now, updated_at=now, **data)
    session.add(svc)
    await session.flush()
    for t in cats + elig:
        session.add(ServiceAttribute(id=new_id(), service_id=svc.id, taxonomy_term_id=t.id))
    for lid in dict.fromkeys(body.location_ids):
        session.add(ServiceAtLocation(id=new_id(), service_id=svc.id, location_id=lid))
    for s in body.schedules:
        session.add(Schedule(id=new_id(), service_id=svc.id, freq="WEEKLY", byday=s.byday, opens_at=s.opens_at,
                             closes_at=s.closes_at, timezone="Asia/Shanghai", description=s.description))
    session.add(ServiceCapacity(id=new_id(), service_id=svc.id, unit=body.capacity.unit,
                                maximum=body.capacity.maximum, description=body.capacity.description, updated=now))
    await session.flush()
    if svc.status == "active":
        await _resource_event(session, svc, "resource.listed", now)
    return svc


async def _resource_event(session: AsyncSession, svc: Service, type_: str, now: datetime, **extra) -> None:
    """`resource.listed` / `resource.withdrawn` (the duplicate-investment indicator counts listed resources by
    category and place): the service's first category (the registry's `category`) and all of them, placed at its
    first location's grid (else community)."""
    cats = [c for (c,) in await session.execute(
        select(TaxonomyTerm.code).join(ServiceAttribute, ServiceAttribute.taxonomy_term_id == TaxonomyTerm.id)
        .where(ServiceAttribute.service_id == svc.id, TaxonomyTerm.taxonomy == "category")
        .order_by(ServiceAttribute.id))]
    place = (await session.execute(
        select(Location.place_code).join(ServiceAtLocation, ServiceAtLocation.location_id == Location.id)
        .where(ServiceAtLocation.service_id == svc.id, Location.place_code.is_not(None))
        .order_by(ServiceAtLocation.id).limit(1))).scalar_one_or_none()
    if place is None:
        org = await session.get(Organization, svc.organization_id)
        place = org.community if org is not None else None
    grid = place[:15] if place and len(place) >= 15 else None
    community = place[:12] if place and len(place) >= 12 else None
    data = {"category": cats[0] if cats else None, "categories": cats, "organization_id": svc.organization_id,
            "status": svc.status, "fees": svc.fees, "department": svc.department, **extra}
    if type_ == "resource.withdrawn":
        data = {k: v for k, v in data.items() if v is not None}
    record_event(session, OutboxEvent, type_, subject=svc.id, data=data, now=now, community=community, grid=grid)


async def set_service_status(session: AsyncSession, principal: Principal, service_id: str, status: str,
                             reason: str | None, version: int | None, *, now: datetime) -> Service:
    """Withdraw a service from the directory (inactive / defunct / temporarily closed) or list it again
    (active): `resource.withdrawn` / `resource.listed` in the same transaction. Offers already made stay."""
    svc = await get_service(session, service_id)
    if principal.role in ("community_staff", "street_staff"):
        org = await session.get(Organization, svc.organization_id)
        places = [p for (p,) in await session.execute(
            select(Location.place_code).join(ServiceAtLocation, ServiceAtLocation.location_id == Location.id)
            .where(ServiceAtLocation.service_id == svc.id))] + [org.community if org else None]
        if not any(principal.covers_place(p) for p in places if p):
            raise Problem(403, "forbidden", ("只能管理本辖区的服务资源", "Only services within your scope"))
    check_version(version, svc.version, "version_conflict", ("服务资源已被他人更新，请刷新后重试",
                  "The service was changed by someone else; reload and retry"), with_current=False)
    if status == svc.status:
        return svc
    was_listed = svc.status == "active"
    svc.status, svc.updated_at, svc.version = status, now, svc.version + 1
    await session.flush()
    if status == "active":
        await _resource_event(session, svc, "resource.listed", now)
    elif was_listed:
        await _resource_event(session, svc, "resource.withdrawn", now, reason=reason)
    await session.flush()
    return svc


async def get_service(session: AsyncSession, service_id: str) -> Service:
    return await get_or_404(session, Service, service_id, Problem(404, "service.not_found", ("服务不存在", "Service not found")))
