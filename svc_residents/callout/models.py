from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class DutyShift(Base):
    """One person on duty for a place between two instants: a grid's backup worker, a community's duty phone,
    a street's duty officer. The phone is stored encrypted (bound to the shift's id) and shown masked."""

    __tablename__ = "duty_shifts"
    __table_args__ = (Index("ix_duty_shifts_place_duty_starts", "place_code", "duty", "starts_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    place_code: Mapped[str] = mapped_column(ForeignKey("places.code"))
    duty: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(50))
    user_id: Mapped[str | None] = mapped_column(String(64))        # a staff account, reached by app push too
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_masked: Mapped[str | None] = mapped_column(String(11))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)


class Callout(Base):
    """The call-out of one emergency request (keyed by the request's id in svc_services)."""

    __tablename__ = "callouts"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grid_code: Mapped[str] = mapped_column(String(24), index=True)
    community_code: Mapped[str] = mapped_column(String(24))
    person_id: Mapped[str | None] = mapped_column(String(36))
    source: Mapped[str] = mapped_column(String(24))                 # app / kiosk / iot / phone …: the channel
    state: Mapped[str] = mapped_column(String(16), index=True)     # chain.STATES
    step: Mapped[int] = mapped_column(default=0)                    # steps made so far
    next_step_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    alarm_at: Mapped[datetime] = mapped_column(UTCDateTime())       # when the request was submitted
    request_state: Mapped[str] = mapped_column(String(16))
    request_version: Mapped[int] = mapped_column(default=0)         # the newest snapshot svc_services sent
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_role: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)


class CalloutAttempt(Base):
    """One step of a chain: who was called (or that nobody was on duty), on which channels, when."""

    __tablename__ = "callout_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("callouts.request_id"), index=True)
    step: Mapped[int] = mapped_column()
    duty: Mapped[str] = mapped_column(String(24))
    targets: Mapped[list] = mapped_column(JSON)                      # [{user_id, name, phone_masked}]
    channels: Mapped[list] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(16))                # called / nobody_on_duty
    made_at: Mapped[datetime] = mapped_column(UTCDateTime())
