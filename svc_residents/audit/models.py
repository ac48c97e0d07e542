from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class AccessAudit(Base):
    """One clear (unmasked) read of sensitive fields: who, what, when, why. Append-only."""

    __tablename__ = "access_audit"
    __table_args__ = (Index("ix_access_audit_subject", "subject_type", "subject_id", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    member: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[str] = mapped_column(String(80), index=True)
    role: Mapped[str] = mapped_column(String(32))
    acting_for: Mapped[str | None] = mapped_column(String(36))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(36))
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
