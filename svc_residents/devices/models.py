from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class AlarmDevice(Base):
    __tablename__ = "alarm_devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)            # the device's serial
    kind: Mapped[str] = mapped_column(String(24))
    member: Mapped[str] = mapped_column(String(64))                          # the IoT platform reporting for it
    person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"), index=True)
    household_id: Mapped[str | None] = mapped_column(ForeignKey("households.id"), index=True)
    grid_code: Mapped[str | None] = mapped_column(String(24), index=True)
    heartbeat_minutes: Mapped[int] = mapped_column(default=30)
    inactivity_hours: Mapped[int | None] = mapped_column()
    active: Mapped[bool] = mapped_column(default=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    welfare_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)


class DeviceAlarm(Base):
    """An alarm a device sent, and the emergency request it became (idempotent by device and event id)."""

    __tablename__ = "device_alarms"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("alarm_devices.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DeviceCheck(Base):
    """A check task for the grid's workers: a device silent past its heartbeat, or a welfare check (独居老人 with
    no activity)."""

    __tablename__ = "device_checks"
    __table_args__ = (Index("ix_device_checks_grid_state", "grid_code", "state"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("alarm_devices.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))            # heartbeat | welfare
    grid_code: Mapped[str] = mapped_column(String(24))
    person_id: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16))           # open | closed
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(String(200))
