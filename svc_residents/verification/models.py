from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class Verification(Base):
    """Once-only verification (一次采集) of one person with one department: the current state, one row per
    (person, department), updated by each attempt.

    status: done (answered, tags applied) / pending (asked, no usable answer yet: time-out or department down,
    retry) / refused (the exchange refused the call, e.g. no live grant: retry once granted) / failed (an answer
    that cannot be used, e.g. the department does not know the person)."""

    __tablename__ = "person_verifications"
    __table_args__ = (UniqueConstraint("person_id", "department"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    department: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(500))
    # What the department said, as the platform's own findings (tag codes, booleans), never the ID number.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(160))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
