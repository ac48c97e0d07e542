"""Community activities (活动报名): organised by the community, a social organisation or a volunteer team, with a
capacity, eligibility, sign-ups with a waitlist, and check-in at the venue that credits the ledger.

`taken` counts the participants holding a place (signed up or checked in), kept within `capacity` by a CHECK and
taken by one conditional UPDATE, as a booking slot's places are; a person signs up once (unique)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_matching.base import Base

ORGANISER_KINDS = ("community", "organisation", "volunteer_team")


class Activity(Base):
    __tablename__ = "activities"
    __table_args__ = (CheckConstraint("taken >= 0 AND taken <= capacity", name="taken_within_capacity"),
                      Index("ix_activities_place_starts", "place_code", "starts_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(32))      # culture | education | health | sports | volunteer | other
    description: Mapped[str | None] = mapped_column(Text)
    organiser_kind: Mapped[str] = mapped_column(String(16))
    organiser_id: Mapped[str | None] = mapped_column(String(36))   # the organisation or volunteer team
    place_code: Mapped[str] = mapped_column(String(24), index=True)  # where it is held (community or grid)
    eligible_scope: Mapped[str] = mapped_column(String(24))         # participants living under this place code
    venue_resource_id: Mapped[str | None] = mapped_column(ForeignKey("bookable_resources.id"))
    venue: Mapped[str | None] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    capacity: Mapped[int] = mapped_column(Integer)
    taken: Mapped[int] = mapped_column(Integer, default=0)
    min_age: Mapped[int | None] = mapped_column(Integer)
    max_age: Mapped[int | None] = mapped_column(Integer)
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)    # any of these special groups (eligibility)
    points: Mapped[int] = mapped_column(Integer, default=0)           # 积分 per participant on check-in
    volunteer_minutes: Mapped[int | None] = mapped_column(Integer)    # 时间银行 per volunteer (default: duration)
    status: Mapped[str] = mapped_column(String(16), default="open")   # open | cancelled
    created_by: Mapped[str] = mapped_column(String(160))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ActivitySignup(Base):
    __tablename__ = "activity_signups"
    __table_args__ = (UniqueConstraint("activity_id", "person_id"),
                      Index("ix_activity_signups_waiting", "activity_id", "state", "created_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    activity_id: Mapped[str] = mapped_column(ForeignKey("activities.id"))
    person_id: Mapped[str] = mapped_column(String(36), index=True)
    role: Mapped[str] = mapped_column(String(16))           # participant | volunteer
    state: Mapped[str] = mapped_column(String(16))          # signed_up | waitlisted | checked_in | cancelled
    signed_up_by: Mapped[str] = mapped_column(String(160))
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checked_in_by: Mapped[str | None] = mapped_column(String(160))
    posting_id: Mapped[str | None] = mapped_column(String(36))  # the ledger posting of the check-in's credit
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the reminder's claim (bookings.reminders)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
