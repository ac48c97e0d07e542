from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class PersonRegistration(Base):
    """A registration of a person whose ID number is already on record where the registering staff cannot see it
    (registrations/service.py): no second record is made; staff of the existing record confirm the move into
    `household_id` or refuse it. The ID number itself is not kept here: `person_id` is the one record it names."""

    __tablename__ = "person_registrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    # what the registering staff gave: the name as they typed it, and the person's place in the new household
    name: Mapped[str] = mapped_column(String(50))
    residency_type: Mapped[str] = mapped_column(String(16))
    relation_to_head: Mapped[str | None] = mapped_column(String(20))
    is_head: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending / confirmed / refused
    requested_by: Mapped[str] = mapped_column(String(160))
    requested_role: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(160))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(String(200))
