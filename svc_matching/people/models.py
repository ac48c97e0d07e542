"""Volunteers (志愿者) and needs (居民需求清单)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_matching.base import Base

NEED_STATUSES = ("open", "offered", "matched", "completed", "unmatched", "cancelled")


class Volunteer(Base):
    __tablename__ = "volunteers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    # [{"byday": "MO,WE", "opens_at": "09:00", "closes_at": "12:00"}], Asia/Shanghai
    availability: Mapped[list[dict]] = mapped_column(JSON, default=list)
    max_load: Mapped[int] = mapped_column(Integer)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    place_code: Mapped[str | None] = mapped_column(String(24), index=True)
    service_radius_m: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="active")
    account_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class Need(Base):
    __tablename__ = "needs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    person_id: Mapped[str | None] = mapped_column(String(36), index=True)
    household_id: Mapped[str | None] = mapped_column(String(36), index=True)
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    priority_score: Mapped[int] = mapped_column(Integer, default=1)
    requester_age: Mapped[int | None] = mapped_column(Integer)
    requester_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    place_code: Mapped[str | None] = mapped_column(String(24), index=True)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    matched_kind: Mapped[str | None] = mapped_column(String(16))
    matched_id: Mapped[str | None] = mapped_column(String(36))
    matched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    match_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class VolunteerHourOffer(Base):
    """Hours a volunteer pledges for a period (认领服务时长): the denominator of volunteer-hour utilisation, whose
    numerator is the minutes the time bank credits for service actually given."""

    __tablename__ = "volunteer_hour_offers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    volunteer_id: Mapped[str] = mapped_column(ForeignKey("volunteers.id"), index=True)
    minutes: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PersonPlace(Base):
    """Where a person of the register lives: svc_residents' person reduced to its grid and community, kept by
    svc_residents' place feed (`PUT /matching/v1/person_places/{person_id}`, ADR 0014; the demo seed fills it).

    It tells the time bank that a person exists (a credit for anyone else is refused, no account is opened for
    them) and which staff see their accounts (those whose scopes cover the grid), without a call to svc_residents
    per request. Data minimisation: no name, ID number, phone, address or household."""

    __tablename__ = "person_places"

    person_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grid_code: Mapped[str | None] = mapped_column(String(24))
    community_code: Mapped[str | None] = mapped_column(String(24))
    # svc_residents' per-person feed version: an older snapshot arriving after a newer one changes nothing.
    # Null for rows only ops or the seed wrote.
    version: Mapped[int | None] = mapped_column(Integer)
    # The person left the register (merged away): a tombstone with the version only, read as an unknown person.
    removed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
