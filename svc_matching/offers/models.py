"""Match proposals and offers (派单 → 接单)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_matching.base import Base

OFFER_STATUSES = ("pending", "accepted", "declined", "expired", "completed")


class MatchProposal(Base):
    """The ranked candidates the engine proposed for a need; offers walk down this list."""

    __tablename__ = "match_proposals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    need_id: Mapped[str] = mapped_column(ForeignKey("needs.id"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    candidates: Mapped[list[dict]] = mapped_column(JSON, default=list)
    next_rank: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Offer(Base):
    __tablename__ = "offers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    need_id: Mapped[str] = mapped_column(ForeignKey("needs.id"), index=True)
    proposal_id: Mapped[str] = mapped_column(ForeignKey("match_proposals.id"), index=True)
    provider_kind: Mapped[str] = mapped_column(String(16))        # service | volunteer
    provider_id: Mapped[str] = mapped_column(String(36), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    cost: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the provider's expiry reminder, claimed once (offers/notices.py)
    expiring_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hours: Mapped[float | None] = mapped_column(Float)
    rating: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
