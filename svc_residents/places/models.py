from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base

LEVELS = ("district", "street", "community", "grid", "building")


class Place(Base):
    """A node of the place hierarchy: district → street → community → grid → building."""

    __tablename__ = "places"

    code: Mapped[str] = mapped_column(String(24), primary_key=True)
    level: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("places.code"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)


class GridWorker(Base):
    """A grid's worker (专职网格员): the user id the gateway issues tokens for, with `grid:<code>` scope."""

    __tablename__ = "grid_workers"

    grid_code: Mapped[str] = mapped_column(ForeignKey("places.code"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
