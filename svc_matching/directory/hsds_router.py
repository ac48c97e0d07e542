"""Read endpoints compatible with the Open Referral HSDS 3.0 API (page/per_page pagination)."""
from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import func, or_, select

from common.deps import DbSession
from common.auth import Principal, get_principal
from common.validators import Instant
from svc_matching.directory import hsds, service
from svc_matching.directory.models import Location, Organization, Service, ServiceAttribute, TaxonomyTerm

router = APIRouter(prefix="/matching/v1/hsds", tags=["HSDS 3.0"])


class HsdsPage:
    def __init__(self, page: int = Query(1, ge=1, le=1_000_000, description="页码，从 1 开始"),
                 per_page: int = Query(50, ge=1, le=200, description="每页条数 (≤ 200)")) -> None:
        self.page = page
        self.per_page = per_page


async def _paged(session, stmt, page: HsdsPage, render) -> dict:
    total = (await session.execute(select(func.count()).select_from(stmt.order_by(None).subquery()))).scalar_one()
    rows = list((await session.execute(stmt.offset((page.page - 1) * page.per_page).limit(page.per_page))).scalars())
    contents = [await render(r) for r in rows]
    pages = max(1, math.ceil(total / page.per_page)) if total else 0
    return {"total_items": total, "total_pages": pages, "page_number": page.page, "size": len(contents),
            "per_page": page.per_page, "first_page": page.page == 1, "last_page": page.page >= pages,
            "empty": not contents, "contents": contents}


@router.get("/", summary="HSDS API 信息 API metadata")
async def root(principal: Principal = Depends(get_principal)):
    return {"version": hsds.HSDS_VERSION, "profile": "https://docs.openreferral.org/en/latest/hsds/",
            "openapi_url": "/openapi.json"}


@router.get("/services", summary="服务列表 (HSDS)")
async def services(session: DbSession, request: Request, page: HsdsPage = Depends(), search: str | None = None,
                   taxonomy_term_id: str | None = None, organization_id: str | None = None,
                   modified_after: Instant | None = None, full: bool = False,
                   principal: Principal = Depends(get_principal)):
    stmt = select(Service).order_by(Service.id)
    if search:
        like = f"%{search}%"
        stmt = stmt.where(or_(Service.name.like(like), Service.description.like(like)))
    if taxonomy_term_id:
        stmt = stmt.where(Service.id.in_(select(ServiceAttribute.service_id)
                                         .where(ServiceAttribute.taxonomy_term_id == taxonomy_term_id)))
    if organization_id:
        stmt = stmt.where(Service.organization_id == organization_id)
    if modified_after:
        stmt = stmt.where(Service.updated_at > modified_after)
    return await _paged(session, stmt, page, lambda s: hsds.service_out(session, s, full=full))


@router.get("/services/{service_id}", summary="服务详情 (HSDS)")
async def service_detail(session: DbSession, service_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return await hsds.service_out(session, await service.get_service(session, service_id))


@router.get("/organizations", summary="机构列表 (HSDS)")
async def organizations(session: DbSession, request: Request, page: HsdsPage = Depends(), search: str | None = None,
                        principal: Principal = Depends(get_principal)):
    stmt = select(Organization).order_by(Organization.id)
    if search:
        stmt = stmt.where(Organization.name.like(f"%{search}%"))

    async def render(org):
        return hsds.organization_out(org)
    return await _paged(session, stmt, page, render)


@router.get("/organizations/{org_id}", summary="机构详情 (HSDS)")
async def organization_detail(session: DbSession, org_id: str, request: Request, principal: Principal = Depends(get_principal)):
    org = await service.get_organization(session, org_id)
    svcs = list((await session.execute(select(Service).where(Service.organization_id == org.id)
                                       .order_by(Service.id))).scalars())
    locs = list((await session.execute(select(Location).where(Location.organization_id == org.id)
                                       .order_by(Location.id))).scalars())
    return hsds.organization_out(org, services=[await hsds.service_out(session, s, full=False) for s in svcs],
                                 locations=[hsds.location_out(x) for x in locs])


@router.get("/taxonomy_terms", summary="分类术语 (HSDS)")
async def taxonomy_terms(session: DbSession, request: Request, page: HsdsPage = Depends(), taxonomy: str | None = None,
                         parent_id: str | None = None, principal: Principal = Depends(get_principal)):
    stmt = select(TaxonomyTerm).order_by(TaxonomyTerm.taxonomy, TaxonomyTerm.code)
    if taxonomy:
        stmt = stmt.where(TaxonomyTerm.taxonomy == taxonomy)
    if parent_id:
        stmt = stmt.where(TaxonomyTerm.parent_id == parent_id)

    async def render(t):
        return hsds.term_out(t)
    return await _paged(session, stmt, page, render)
