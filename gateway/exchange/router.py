"""`/exchange/v1/catalogue`, `/exchange/v1/grants` (申请-审批) and `/exchange/v1/log` (owners' view of the log)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.deps import AppDb, DbSession
from common.auth import Principal, get_principal, require_roles
from common.clock import Clock, get_clock
from common.errors import Problem
from common.lookup import get_or_404
from common.pagination import Page, PageParams
from gateway.deps import Edge, Idempotent, OpenAPIDocs, Policy
from gateway.edge.link import EdgeLink, notify
from gateway.exchange import service
from gateway.exchange.policy import ExchangePolicy
from gateway.exchange.models import Grant, MessageLog, Resource
from gateway.exchange.schemas import (SHARING_LABELS, GrantApply, GrantApprove, GrantOut, GrantRefuse,
                                      GrantRevoke, LogEntryOut, ResourceOut, SharingClass)

router = APIRouter(prefix="/exchange/v1", tags=["exchange 数据交换"])
members_only = require_roles("system", "dept_staff", "community_staff", "street_staff", "ops")


def _resource_out(r: Resource) -> ResourceOut:
    out = ResourceOut.model_validate(r)
    out.sharing_label = SHARING_LABELS[r.sharing_class]
    return out


@router.get("/catalogue", response_model=Page[ResourceOut], summary="政务信息资源目录 Browse the resource catalogue")
async def list_catalogue(session: DbSession, page: PageParams = Depends(),
                         owner: str | None = Query(None, description="提供方成员单位"),
                         sharing_class: SharingClass | None = Query(None, description="共享类型"),
                         principal: Principal = Depends(get_principal)):
    q = select(Resource)
    if owner:
        q = q.where(Resource.owner == owner)
    if sharing_class:
        q = q.where(Resource.sharing_class == sharing_class)
    rows = (await session.execute(page.keyset(q, Resource.code))).scalars().all()
    return page.page(rows, key=lambda r: r.code, item=_resource_out)


@router.post("/catalogue/refresh", summary="由各服务 OpenAPI 重新生成资源目录 Re-derive the catalogue",
             description="读取各服务的 OpenAPI 文档，结合资源标注（共享类型、字段分级）重新生成资源目录。")
async def refresh(db: AppDb, docs: OpenAPIDocs, policy: Policy, edge: Edge,
                  principal: Principal = Depends(require_roles("ops")), clock: Clock = Depends(get_clock)) -> dict:
    report = await service.refresh_catalogue(db, docs, policy, clock.now())
    await notify(edge)
    return report


@router.get("/catalogue/{code}", response_model=ResourceOut, summary="资源详情 One catalogue entry")
async def get_resource(session: DbSession, code: str, principal: Principal = Depends(get_principal)):
    r = await get_or_404(session, Resource, code,
                         Problem(404, "resource.not_found", ("资源目录中没有这个资源", "No such resource in the catalogue")))
    return _resource_out(r)


@router.post("/grants", status_code=201, response_model=GrantOut,
             summary="申请使用资源 Apply for a resource",
             description="无条件共享资源申请即批准；有条件共享资源待提供方审批（形式审查 2 个工作日，答复 5 个工作日）。")
async def apply_grant(body: GrantApply, idem: Idempotent, policy: Policy, edge: Edge,
                      principal: Principal = Depends(members_only), clock: Clock = Depends(get_clock)):
    now = clock.now()
    created: list[Grant] = []

    async def create(session):
        grant = await service.apply(session, body, principal, now)
        created.append(grant)
        return 201, service.grant_out(grant, now)

    resp = await idem.run(body.model_dump(), create, now=now)
    if created and created[0].status == "approved":
        policy.put_grant(created[0])
        await notify(edge)
    return resp


@router.get("/grants", response_model=Page[GrantOut], summary="授权与申请列表 Grants (as consumer or owner)")
async def list_grants(session: DbSession, page: PageParams = Depends(),
                      side: Literal["consumer", "owner", "any"] = Query("any", description="本单位作为申请方或提供方"),
                      status: Literal["pending", "approved", "refused", "revoked"] | None = None,
                      resource: str | None = None, overdue: bool | None = Query(None, description="只看超期"),
                      principal: Principal = Depends(members_only), clock: Clock = Depends(get_clock)):
    now = clock.now()
    q = select(Grant)
    if principal.role != "ops" or side != "any":
        if side == "consumer":
            q = q.where(Grant.consumer == principal.member)
        elif side == "owner":
            q = q.where(Grant.owner == principal.member)
        else:
            q = q.where((Grant.consumer == principal.member) | (Grant.owner == principal.member))
    if status:
        q = q.where(Grant.status == status)
    if resource:
        q = q.where(Grant.resource == resource)
    rows = (await session.execute(page.keyset(q, Grant.id, descending=True))).scalars().all()
    out = page.page(rows, key=lambda g: g.id, item=lambda g: service.grant_out(g, now))
    if overdue is not None:
        out.items = [g for g in out.items if g.overdue == overdue]
    return out


@router.get("/grants/{grant_id}", response_model=GrantOut, summary="授权详情 One grant")
async def get_grant(session: DbSession, grant_id: str, principal: Principal = Depends(members_only),
                    clock: Clock = Depends(get_clock)):
    g = await get_or_404(session, Grant, grant_id, Problem(404, "grant.not_found", ("授权申请不存在", "No such grant")),
                         visible=lambda g: principal.role == "ops" or principal.member in (g.owner, g.consumer))
    return service.grant_out(g, clock.now())


async def _decide(session: AsyncSession, policy: ExchangePolicy, edge: EdgeLink | None, now: datetime,
                  fn, *args) -> GrantOut:
    async with session.begin():
        grant = await fn(session, *args, now)
    if grant.status == "approved":
        policy.put_grant(grant)
    else:
        policy.drop_grant(grant.consumer, grant.resource, grant.id)
    await notify(edge)
    return service.grant_out(grant, now)


@router.post("/grants/{grant_id}/check", response_model=GrantOut, summary="受理（形式审查）Accept for review")
async def check_grant(grant_id: str, session: DbSession, policy: Policy, edge: Edge, principal: Principal = Depends(members_only),
                      clock: Clock = Depends(get_clock)):
    return await _decide(session, policy, edge, clock.now(), service.check, grant_id, principal)


@router.post("/grants/{grant_id}/approve", response_model=GrantOut, summary="批准 Approve with scope and expiry")
async def approve_grant(grant_id: str, body: GrantApprove, session: DbSession, policy: Policy, edge: Edge,
                        principal: Principal = Depends(members_only), clock: Clock = Depends(get_clock)):
    return await _decide(session, policy, edge, clock.now(), service.approve, grant_id, body, principal)


@router.post("/grants/{grant_id}/refuse", response_model=GrantOut, summary="不予批准 Refuse with a reason")
async def refuse_grant(grant_id: str, body: GrantRefuse, session: DbSession, policy: Policy, edge: Edge,
                       principal: Principal = Depends(members_only), clock: Clock = Depends(get_clock)):
    return await _decide(session, policy, edge, clock.now(), service.refuse, grant_id, body.reason, principal)


@router.post("/grants/{grant_id}/revoke", response_model=GrantOut, summary="撤销授权 Revoke (immediate)")
async def revoke_grant(grant_id: str, session: DbSession, policy: Policy, edge: Edge,
                       body: GrantRevoke | None = None,
                       principal: Principal = Depends(members_only), clock: Clock = Depends(get_clock)):
    return await _decide(session, policy, edge, clock.now(), service.revoke, grant_id, body.reason if body else None, principal)


@router.get("/log", response_model=Page[LogEntryOut], summary="交换日志 Message log of your own resources")
async def message_log(session: DbSession, page: PageParams = Depends(), resource: str | None = None,
                      member: str | None = Query(None, description="调用方成员单位"),
                      principal: Principal = Depends(members_only)):
    q = select(MessageLog)
    if principal.role != "ops":
        q = q.where(MessageLog.owner == principal.member)
    if resource:
        q = q.where(MessageLog.resource == resource)
    if member:
        q = q.where(MessageLog.member == member)
    rows = (await session.execute(page.keyset(q, MessageLog.seq, descending=True, kind=int))).scalars().all()
    return page.page(rows, key=lambda r: r.seq, item=LogEntryOut.model_validate)
