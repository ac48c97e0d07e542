"""What svc_services keeps about a requester: a minimal replica of svc_residents' person, for event payloads."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class RequesterProfile(Base):
    """Birth date and special-group tags of a person, copied from svc_residents (the record of truth) by its
    feed (`PUT /services/v1/requester_profiles/{person_id}`, system / ops; the demo seed fills it like the grids).

    Data minimisation: no name, ID number, phone or address; only what the indicators need (age at submission,
    group tags valid at submission). Intake reads it from a process cache, never svc_residents per submission."""

    __tablename__ = "requester_profiles"

    person_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    # [{"code": "elderly", "valid_until": "2027-12-31" | null}]
    groups: Mapped[list[dict]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # svc_residents' per-person snapshot version (its feed, ADR 0007): an older snapshot arriving after a newer one
    # (a retry, a second relay) is ignored. Null for rows only ops or the seed wrote.
    version: Mapped[int | None] = mapped_column(Integer)
    # A person who left the register (merged away, deceased) with a feed version: kept as a tombstone without any
    # data, so a delayed older snapshot cannot bring the profile back. Read like an absent profile.
    removed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
