from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from common.deps import AppClock, CurrentPrincipal, DbSession
from common.pagination import Page, PageParams
from common.validators import VersionNumber
from svc_services.catalogue import service
from svc_services.catalogue.schemas import ItemCreate, ItemOut, ItemUpdate
from svc_services.codes import Category, Channel
from svc_services.deps import Idempotent


router = APIRouter(prefix="/services/v1/catalogue/items", tags=["catalogue 事项清单"])


@router.post("", status_code=201, response_model=ItemOut, summary="新建事项 Create a catalogue item")
async def create_item(body: ItemCreate, idem: Idempotent, principal: CurrentPrincipal, clock: AppClock):
    service.check_manage(principal)

    async def create(session):
        return 201, await service.create_item(session, principal, body, clock)

    return await idem.run(body.model_dump(), create)


@router.get("", response_model=Page[ItemOut], summary="事项列表 List catalogue items")
async def list_items(session: DbSession, principal: CurrentPrincipal, category: Category | None = None,
                     channel: Channel | None = None, active: bool | None = Query(True, description="默认只列在用事项"),
                     page: PageParams = Depends()):
    rows = await service.list_items(session, category=category, channel=channel, active=active,
                                    after=page.after_key(), limit=page.limit)
    return page.page(rows, key=lambda r: r.code)


@router.get("/{code}", response_model=ItemOut, summary="事项详情 Get an item (current or a given version)")
async def get_item(session: DbSession, code: str, principal: CurrentPrincipal,
                   version: VersionNumber | None = Query(None)):
    return service.to_out(*await service.get_item(session, code, version))


@router.get("/{code}/versions", response_model=list[ItemOut], summary="事项历史版本 All versions of an item")
async def list_versions(session: DbSession, code: str, principal: CurrentPrincipal):
    return await service.list_versions(session, code)


@router.put("/{code}", response_model=ItemOut, summary="修改事项（生成新版本） Edit an item (adds a version)")
async def update_item(session: DbSession, code: str, body: ItemUpdate, principal: CurrentPrincipal,
                      clock: AppClock):
    async with session.begin():
        return await service.update_item(session, principal, code, body, clock)


@router.delete("/{code}", response_model=ItemOut, summary="停用事项 Withdraw an item (versions are kept)")
async def withdraw_item(session: DbSession, code: str, principal: CurrentPrincipal, clock: AppClock):
    async with session.begin():
        return await service.set_active(session, principal, code, False, clock)


@router.post("/{code}/activate", response_model=ItemOut, summary="重新启用事项 Re-activate an item")
async def activate_item(code: str, idem: Idempotent, principal: CurrentPrincipal, clock: AppClock):
    async def create(session):
        return 200, await service.set_active(session, principal, code, True, clock)

    return await idem.run(None, create)
