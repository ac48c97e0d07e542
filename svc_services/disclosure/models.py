"""A public notice with its window and objection period, fund lines, and the objections residents file."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class PublicNotice(Base):
    __tablename__ = "public_notices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    scope_code: Mapped[str] = mapped_column(String(24), index=True)
    topic_id: Mapped[str | None] = mapped_column(String(36), index=True)
    publish_from: Mapped[datetime] = mapped_column(UTCDateTime())
    publish_until: Mapped[datetime] = mapped_column(UTCDateTime())
    objection_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="published")  # published | withdrawn
    withdrawn_reason: Mapped[str | None] = mapped_column(Text)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # fund disclosure (资金公示): [{"direction": "income"|"expense", "item": ..., "amount": "12.50"}]
    lines: Mapped[list[dict]] = mapped_column(JSON, default=list)
    income_total: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    expense_total: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # a deliberation result: tally hash, counts
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class Objection(Base):
    __tablename__ = "public_notice_objections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    notice_id: Mapped[str] = mapped_column(ForeignKey("public_notices.id"), index=True)
    person_id: Mapped[str] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(120))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
