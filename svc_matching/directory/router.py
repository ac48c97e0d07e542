from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from common.deps import DbSession
from common.auth import Principal, get_principal, require_roles
from common.clock import Clock, get_clock
from svc_matching.deps import Idempotent
from svc_matching.directory import hsds, service
from svc_matching.directory.schemas import (
    LocationCreate, OrganizationCreate, ServiceCreate, ServiceStatusIn, TaxonomyTermCreate,
)
from svc_matching.directory.service import DIRECTORY_ROLES

router = APIRouter(prefix="/matching/v1", tags=["directory 资源清单"])
staff = require_roles(*DIRECTORY_ROLES)


@router.post("/taxonomy_terms", status_code=201, summary="新增分类术语 Create a taxonomy term")
async def create_term(body: TaxonomyTermCreate, idem: Idempotent, principal: Principal = Depends(staff),
                      clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, hsds.term_out(await service.create_term(session, body, now=now))
    return await idem.run(body.model_dump(), create, now=now)


@router.post("/organizations", status_code=201, summary="登记机构 Register an organisation")
async def create_organization(body: OrganizationCreate, idem: Idempotent, principal: Principal = Depends(staff),
                              clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, hsds.organization_out(await service.create_organization(session, principal, body, now=now))
    return await idem.run(body.model_dump(), create, now=now)


@router.post("/organizations/{org_id}/locations", status_code=201, summary="新增服务地点 Add a location")
async def create_location(org_id: str, body: LocationCreate, idem: Idempotent, principal: Principal = Depends(staff),
                          clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        await service.check_org_scope(session, principal, org_id)
        return 201, hsds.location_out(await service.create_location(session, org_id, body, now=now))
    return await idem.run(body.model_dump(), create, now=now)


@router.post("/services", status_code=201, summary="发布服务资源 Publish a service (with schedule, capacity, terms)")
async def create_service(body: ServiceCreate, idem: Idempotent, principal: Principal = Depends(staff),
                         clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        await service.check_org_scope(session, principal, body.organization_id)
        svc = await service.create_service(session, body, now=now)
        return 201, await hsds.service_out(session, svc)
    return await idem.run(body.model_dump(), create, now=now)


@router.get("/services/{service_id}", summary="服务详情 Get a service")
async def get_service(session: DbSession, service_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return await hsds.service_out(session, await service.get_service(session, service_id))


@router.post("/services/{service_id}/status", summary="上架或撤下服务资源 List again or withdraw a service")
async def set_service_status(session: DbSession, service_id: str, body: ServiceStatusIn, request: Request,
                             principal: Principal = Depends(staff), clock: Clock = Depends(get_clock)):
    async with session.begin():
        svc = await service.set_service_status(session, principal, service_id, body.status, body.reason,
                                               body.version, now=clock.now())
        return await hsds.service_out(session, svc)
