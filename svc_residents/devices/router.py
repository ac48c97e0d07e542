from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from common.deps import AppClock, CurrentPrincipal, DbSession
from common.pagination import Page, PageParams
from svc_residents.deps import Idempotent
from svc_residents.devices import service
from svc_residents.devices.models import AlarmDevice, DeviceCheck
from svc_residents.devices.schemas import (CheckClose, CheckOut, DeviceCreate, DeviceEventIn, DeviceEventOut,
                                           DeviceOut, DeviceUpdate)

router = APIRouter(prefix="/residents/v1", tags=["alarm devices 报警设备"])
DeviceId = Path(min_length=1, max_length=64)


@router.post("/devices", status_code=201, response_model=DeviceOut, summary="登记报警设备 Register an alarm device")
async def register(idem: Idempotent, body: DeviceCreate, principal: CurrentPrincipal, clock: AppClock):
    now = clock.now()

    async def create(session):
        return 201, DeviceOut.model_validate(await service.register(session, principal, body, now=now))

    return await idem.run(body.model_dump(), create, now=now)


@router.get("/devices", response_model=Page[DeviceOut], summary="报警设备 Alarm devices in scope")
async def list_devices(session: DbSession, principal: CurrentPrincipal, page: PageParams = Depends(),
                       grid_code: str = Query(min_length=15, max_length=24)):
    from common.errors import Forbidden

    if principal.role not in service.EDITORS or not service.may_see(principal, grid_code):
        raise Forbidden(("只能查看本辖区的报警设备", "You may only list devices of grids in your scope"))
    stmt = page.keyset(service.select_devices(grid_code), AlarmDevice.id)
    rows = (await session.execute(stmt)).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=DeviceOut.model_validate)


@router.get("/devices/{device_id}", response_model=DeviceOut, summary="报警设备 An alarm device")
async def get_device(session: DbSession, principal: CurrentPrincipal, device_id: str = DeviceId):
    return DeviceOut.model_validate(await service.get_device(session, principal, device_id))


@router.patch("/devices/{device_id}", response_model=DeviceOut, summary="绑定、解绑、停用 Change an alarm device")
async def update(body: DeviceUpdate, session: DbSession, principal: CurrentPrincipal, clock: AppClock,
                 device_id: str = DeviceId):
    async with session.begin():
        return DeviceOut.model_validate(await service.update(session, principal, device_id, body, now=clock.now()))


@router.post("/devices/{device_id}/events", response_model=DeviceEventOut,
             summary="设备上报（报警、心跳、活动；由设备的物联平台调用） A device's event")
async def device_event(body: DeviceEventIn, session: DbSession, principal: CurrentPrincipal, clock: AppClock,
                       device_id: str = DeviceId):
    async with session.begin():
        if body.type != "alarm":
            await service.heartbeat(session, principal, device_id, body, now=clock.now())
            return DeviceEventOut(device_id=device_id, type=body.type)
        # the alarm and its row of the alarm feed commit together; svc_services files the request (ADR 0022)
        alarm = await service.raise_alarm(session, principal, device_id, body, now=clock.now())
    return DeviceEventOut(device_id=device_id, type="alarm", alarm_id=alarm.id, request_id=alarm.request_id)


@router.get("/device_checks", response_model=Page[CheckOut], summary="设备核查与关怀探访任务 Check tasks in scope")
async def list_checks(session: DbSession, principal: CurrentPrincipal, page: PageParams = Depends(),
                      state: Literal["open", "closed"] | None = Query(None)):
    stmt = service.checks_stmt(principal)
    if state:
        stmt = stmt.where(DeviceCheck.state == state)
    rows = (await session.execute(page.keyset(stmt, DeviceCheck.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=CheckOut.model_validate)


@router.post("/device_checks/{check_id}/close", response_model=CheckOut, summary="办结核查任务 Close a check task")
async def close_check(body: CheckClose, session: DbSession, principal: CurrentPrincipal, clock: AppClock,
                      check_id: str = Path(min_length=1, max_length=36)):
    async with session.begin():
        return CheckOut.model_validate(await service.close_check(session, principal, check_id, body.note,
                                                                 now=clock.now()))
