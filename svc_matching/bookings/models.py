"""Bookable resources (场地 · 食堂座位 · 窗口预约号), their slots and the bookings on them (场地预约 · 服务预约).

A slot row exists once somebody booked in it (`booking_slots`, unique per resource and start); `taken` counts the
places held (confirmed, pending approval, checked in) and a CHECK keeps it within `capacity`, so two processes
can never both take the last place: the winner's conditional UPDATE holds the row, the other's finds it full.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from common.models import BigIntPK
from svc_matching.base import Base

RESOURCE_KINDS = ("activity_room", "meeting_room", "canteen_seat", "counter", "home_visit")
BOOKERS = ("resident", "organisation", "staff")


class BookableResource(Base):
    __tablename__ = "bookable_resources"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    place_code: Mapped[str] = mapped_column(String(24), index=True)      # the community (or grid) it belongs to
    location_id: Mapped[str | None] = mapped_column(String(36))           # the directory's location, if any
    # {"workday": ["09:00-12:00", "14:00-18:00"], "weekend": [...], "holiday": [...]}, Asia/Shanghai; which kind a
    # date is comes from the working-day calendar (调休 included)
    opening_hours: Mapped[dict] = mapped_column(JSON)
    closed_dates: Mapped[list[str]] = mapped_column(JSON, default=list)
    slot_minutes: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    bookers: Mapped[list[str]] = mapped_column(JSON)                      # subset of BOOKERS
    booker_scope: Mapped[str] = mapped_column(String(24))                 # residents living under this place code
    advance_days: Mapped[int] = mapped_column(Integer)
    weekly_limit: Mapped[int] = mapped_column(Integer)                    # per person per week (Monday–Sunday)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    no_show_limit: Mapped[int] = mapped_column(Integer, default=3)        # this many no-shows within …
    no_show_window_days: Mapped[int] = mapped_column(Integer, default=90)  # … these days block booking …
    no_show_block_days: Mapped[int] = mapped_column(Integer, default=30)  # … for these days
    catalogue_item_code: Mapped[str | None] = mapped_column(String(32), index=True)  # 服务预约: the item it serves
    status: Mapped[str] = mapped_column(String(16), default="active")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BookingSlot(Base):
    __tablename__ = "booking_slots"
    __table_args__ = (UniqueConstraint("resource_id", "starts_at"),
                      CheckConstraint("taken >= 0 AND taken <= capacity", name="taken_within_capacity"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("bookable_resources.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    capacity: Mapped[int] = mapped_column(Integer)
    taken: Mapped[int] = mapped_column(Integer, default=0)


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (Index("ix_bookings_person_starts", "person_id", "starts_at"),
                      Index("ix_bookings_slot_state", "slot_id", "state", "created_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("bookable_resources.id"), index=True)
    slot_id: Mapped[str] = mapped_column(ForeignKey("booking_slots.id"))
    place_code: Mapped[str] = mapped_column(String(24), index=True)       # the resource's, for staff lists
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    booker_kind: Mapped[str] = mapped_column(String(16))                  # resident | organisation | staff
    person_id: Mapped[str | None] = mapped_column(String(36))
    organization_id: Mapped[str | None] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)  # a svc_services request's appointment
    booked_by: Mapped[str] = mapped_column(String(160))
    purpose: Mapped[str | None] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(24))
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the reminder's claim (bookings.reminders)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BookingEntry(Base):
    """The booking's timeline: every step (and every reschedule, with the old and new times) kept."""
    __tablename__ = "booking_entries"
    __table_args__ = (UniqueConstraint("booking_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"))
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(160))
    role: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(300))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())            # the slot at that step
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class BookingBlock(Base):
    """A person barred from booking a place's resources until `until` (the no-show rule of the resource)."""
    __tablename__ = "booking_blocks"
    __table_args__ = (Index("ix_booking_blocks_person", "person_id", "until"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(36))
    place_code: Mapped[str] = mapped_column(String(24))
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
