"""Devices: registration and binding (staff covering the place), events from the device's member system, check
tasks for the grid's workers."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, NotFound, Problem, check_version, invalid
from common.ids import new_id
from common.lookup import get_or_404
from svc_residents import access
from svc_residents.devices import feed
from svc_residents.devices.models import AlarmDevice, DeviceAlarm, DeviceCheck
from svc_residents.devices.schemas import DeviceCreate, DeviceEventIn, DeviceUpdate
from svc_residents.households.models import Household
from svc_residents.persons.models import Person

KIND_ZH = {"bracelet": "智能手环", "smoke_sensor": "烟感", "door_sensor": "门磁"}
NOT_FOUND = NotFound("device.not_found", ("设备不存在或无权查看", "Device not found"))
CHECK_NOT_FOUND = NotFound("device_check.not_found", ("核查任务不存在或无权查看", "Check task not found"))
EDITORS = ("grid_worker", "community_staff", "street_staff", "ops")


def may_see(principal: Principal, grid_code: str | None) -> bool:
    return principal.role == "ops" or (grid_code is not None and access.staff_covers(principal, grid_code))


async def _binding(session: AsyncSession, principal: Principal, person_id: str | None,
                   household_id: str | None) -> tuple[str | None, str | None, str | None]:
    """(person, household, grid) of a binding the caller covers; refused naming the field otherwise."""
    if person_id and household_id:
        raise invalid("household_id", "device.two_bindings", "设备只能绑定到一个人或一户",
                      "Bind a device to a person or a household, not both")
    if person_id:
        p = await session.get(Person, person_id)
        if p is None or p.merged_into or not access.staff_covers(principal, p.grid_code):
            raise invalid("person_id", "device.person_unknown", "居民不存在或不在您的辖区", "Unknown person")
        return p.id, p.household_id, p.grid_code
    if household_id:
        h = await session.get(Household, household_id)
        if h is None or not access.staff_covers(principal, h.grid_code):
            raise invalid("household_id", "device.household_unknown", "户不存在或不在您的辖区", "Unknown household")
        return None, h.id, h.grid_code
    return None, None, None


def _schedule(d: AlarmDevice, now: datetime) -> None:
    seen = d.last_heartbeat_at or d.created_at
    d.heartbeat_due_at = seen + timedelta(minutes=d.heartbeat_minutes) if d.active and d.grid_code else None
    active = d.last_activity_at or d.created_at
    d.welfare_due_at = (active + timedelta(hours=d.inactivity_hours)
                        if d.active and d.person_id and d.inactivity_hours else None)


async def register(session: AsyncSession, principal: Principal, body: DeviceCreate, *, now: datetime) -> AlarmDevice:
    if principal.role not in EDITORS:
        raise Forbidden(("只有本辖区工作人员可以登记报警设备", "Only place staff register alarm devices"))
    person_id, household_id, grid = await _binding(session, principal, body.person_id, body.household_id)
    if grid is None and principal.role != "ops":
        raise invalid("person_id", "device.binding_required", "请绑定居民或户", "Bind the device to a person or household")
    d = AlarmDevice(id=body.id, kind=body.kind, member=body.member, person_id=person_id, household_id=household_id,
                    grid_code=grid, heartbeat_minutes=body.heartbeat_minutes, inactivity_hours=body.inactivity_hours,
                    active=True, created_by=principal.caller, created_at=now, updated_at=now, version=1)
    _schedule(d, now)
    session.add(d)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("device.exists", ("该设备已登记", "This device is registered already")) from None
    return d


async def get_device(session: AsyncSession, principal: Principal, device_id: str, *, for_update: bool = False):
    return await get_or_404(session, AlarmDevice, device_id, NOT_FOUND, for_update=for_update,
                            visible=lambda d: may_see(principal, d.grid_code))


async def update(session: AsyncSession, principal: Principal, device_id: str, body: DeviceUpdate, *,
                 now: datetime) -> AlarmDevice:
    d = await get_device(session, principal, device_id, for_update=True)
    if principal.role not in EDITORS:
        raise Forbidden(("只有本辖区工作人员可以修改报警设备", "Only place staff change alarm devices"))
    check_version(body.version, d.version)
    given = body.model_fields_set - {"version"}
    if given & {"person_id", "household_id"}:  # a new binding (both None: unbound, e.g. taken back for repair)
        d.person_id, d.household_id, d.grid_code = await _binding(session, principal, body.person_id,
                                                                  body.household_id)
    for f in ("active", "heartbeat_minutes", "inactivity_hours"):
        if f in given and (getattr(body, f) is not None or f == "inactivity_hours"):
            setattr(d, f, getattr(body, f))
    _schedule(d, now)
    d.version += 1
    d.updated_at = now
    await session.flush()
    return d


async def _source_device(session: AsyncSession, principal: Principal, device_id: str) -> AlarmDevice:
    """The device, for its own member system only: to anyone else an unknown device (no probing of serials)."""
    d = await session.get(AlarmDevice, device_id, with_for_update=True)
    if d is None or principal.role != "system" or principal.member != d.member:
        if principal.role != "system":
            raise Forbidden(("设备事件只能由其物联平台上报", "Device events come from the device's platform"))
        raise NOT_FOUND
    if not d.active:
        raise Problem(409, "device.inactive", ("该设备已停用", "This device is deactivated"))
    return d


async def heartbeat(session: AsyncSession, principal: Principal, device_id: str, body: DeviceEventIn, *,
                    now: datetime) -> AlarmDevice:
    d = await _source_device(session, principal, device_id)
    d.last_heartbeat_at = now
    if body.type == "activity":
        d.last_activity_at = now
    _schedule(d, now)
    d.updated_at = now
    await session.flush()
    return d


async def raise_alarm(session: AsyncSession, principal: Principal, device_id: str, body: DeviceEventIn, *,
                      now: datetime) -> DeviceAlarm:
    """The alarm, once per device event, and its `alarm.raised` row in this same transaction: svc_services files it
    as an emergency request at the bound person's (or household's) place, with the request id chosen here so the
    device hears it at once. The device row is locked first, so a retry racing its original finds the alarm."""
    d = await _source_device(session, principal, device_id)
    done = (await session.execute(select(DeviceAlarm).where(DeviceAlarm.device_id == d.id,
                                                            DeviceAlarm.event_id == body.event_id))).scalar_one_or_none()
    if done is not None:
        return done
    if d.grid_code is None:
        raise invalid("device_id", "device.unbound", "该设备未绑定居民或户，报警无法定位，请联系社区绑定",
                      "This device is bound to nobody; its alarm has no place", where="path")
    address = None
    if d.household_id:
        h = await session.get(Household, d.household_id)
        address = h.address if h else None
    alarm = DeviceAlarm(id=new_id(), device_id=d.id, event_id=body.event_id, request_id=new_id(), occurred_at=now,
                        created_at=now)
    session.add(alarm)
    feed.record_raised(session, alarm_id=alarm.id, now=now, data={
        "request_id": alarm.request_id, "device_id": d.id, "device_kind": d.kind, "event_id": body.event_id,
        "person_id": d.person_id, "household_id": d.household_id, "grid": d.grid_code, "address": address,
        "description": f"{KIND_ZH[d.kind]}报警（设备 {d.id}）", "raised_at": now.isoformat(),
        "device_time": body.occurred_at.isoformat() if body.occurred_at else None})
    d.last_heartbeat_at = d.last_activity_at = now
    _schedule(d, now)
    d.updated_at = now
    await session.flush()
    return alarm


def checks_stmt(principal: Principal):
    if principal.role not in EDITORS:
        raise Forbidden(("只有本辖区工作人员可以查看核查任务", "Only place staff see check tasks"))
    stmt = select(DeviceCheck)
    if principal.role != "ops":
        from sqlalchemy import false, or_

        places = [v for k in ("grid", "community", "street", "district") for v in principal.scope_values(k)]
        stmt = stmt.where(or_(false(), *(DeviceCheck.grid_code.startswith(p) for p in places)))
    return stmt


async def close_check(session: AsyncSession, principal: Principal, check_id: str, note: str, *,
                      now: datetime) -> DeviceCheck:
    c = await get_or_404(session, DeviceCheck, check_id, CHECK_NOT_FOUND, for_update=True,
                         visible=lambda c: may_see(principal, c.grid_code))
    if principal.role not in EDITORS:
        raise Forbidden(("只有本辖区工作人员可以办结核查任务", "Only place staff close check tasks"))
    if c.state != "open":
        raise Conflict("device_check.closed", ("该核查任务已办结", "This check task is closed"))
    c.state, c.closed_at, c.closed_by, c.note = "closed", now, principal.caller, note.strip()
    await session.flush()
    return c


def select_devices(grid_code: str):
    return select(AlarmDevice).where(AlarmDevice.grid_code == grid_code)

