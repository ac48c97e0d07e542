from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class Household(Base):
    """户 (一户一档): an address in a grid (and optionally a building), its head and members."""

    __tablename__ = "households"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    address: Mapped[str] = mapped_column(String(200))
    building_code: Mapped[str | None] = mapped_column(ForeignKey("places.code"), index=True)
    grid_code: Mapped[str] = mapped_column(ForeignKey("places.code"), index=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("places.code"), index=True)
    # No FK: the head is a member added after the household exists; the service keeps it a member.
    head_person_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)
