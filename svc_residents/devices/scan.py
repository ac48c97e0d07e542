"""Raises check tasks: a device silent past its heartbeat (a task for the grid's workers), a lone elderly person's
device without activity past `inactivity_hours` (a welfare check, 关怀探访). Each device is claimed (`FOR UPDATE
SKIP LOCKED` on PostgreSQL) and its due time cleared in the same transaction, so with several replicas a task is
raised once; the next heartbeat or activity schedules the next one."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import Clock
from common.db import Database
from common.ids import new_id
from svc_residents.devices.models import AlarmDevice, DeviceCheck
from svc_residents.devices.service import KIND_ZH
from svc_residents.notifications.service import notify
from svc_residents.persons.models import PersonTag
from svc_residents.places.models import GridWorker

BATCH = 200
TEXT = {"heartbeat": "{kind}（设备 {id}）已超过 {mins} 分钟未上报心跳，请尽快上门或电话核查设备与住户情况。",
        "welfare": "独居老人的{kind}（设备 {id}）已 {hours} 小时无活动，请尽快上门关怀探访。"}


async def _raise(session: AsyncSession, d: AlarmDevice, kind: str, now: datetime) -> DeviceCheck:
    c = DeviceCheck(id=new_id(), device_id=d.id, kind=kind, grid_code=d.grid_code, person_id=d.person_id,
                    state="open", raised_at=now)
    session.add(c)
    text = TEXT[kind].format(kind=KIND_ZH[d.kind], id=d.id, mins=d.heartbeat_minutes, hours=d.inactivity_hours)
    workers = (await session.execute(select(GridWorker.user_id).where(GridWorker.grid_code == d.grid_code))).scalars()
    for user in workers:
        await notify(session, recipient=f"user:{user}", template="safety.alert", variables={"text": text},
                     event_key=f"device_check:{c.id}", now=now, urgency="urgent", subject=d.id,
                     community=d.grid_code[:12], grid=d.grid_code)
    return c


async def _one(db: Database, device_id: str, clock: Clock) -> int:
    async with db.session() as session, session.begin():
        stmt = select(AlarmDevice).where(AlarmDevice.id == device_id).execution_options(populate_existing=True)
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        d = (await session.execute(stmt)).scalar_one_or_none()
        now = clock.now()
        if d is None or not d.active or d.grid_code is None:
            return 0
        raised = 0
        if d.heartbeat_due_at is not None and d.heartbeat_due_at <= now:
            await _raise(session, d, "heartbeat", now)
            d.heartbeat_due_at, raised = None, raised + 1
        if d.welfare_due_at is not None and d.welfare_due_at <= now:
            alone = d.person_id and (await session.execute(select(PersonTag.code).where(
                PersonTag.person_id == d.person_id, PersonTag.code == "living_alone"))).first()
            if alone:
                await _raise(session, d, "welfare", now)
                raised += 1
            d.welfare_due_at = None
        return raised


async def run_device_scan(db: Database, clock: Clock) -> int:
    """Check tasks raised in this pass."""
    now = clock.now()
    async with db.session() as session:
        due = list((await session.execute(select(AlarmDevice.id).where(
            AlarmDevice.active.is_(True), or_(AlarmDevice.heartbeat_due_at <= now, AlarmDevice.welfare_due_at <= now))
            .limit(BATCH))).scalars())
    return sum([await _one(db, device_id, clock) for device_id in due])
