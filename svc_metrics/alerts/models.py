"""Early warnings (风险预警) with their evidence; a satisfaction warning doubles as a rectification case (整改)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_metrics.base import Base


class Warning_(Base):  # noqa: N801 - `Warning` is a builtin
    __tablename__ = "warnings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))        # surge | overdue_backlog | low_satisfaction | low_match | bottom_decile | task_overdue
    # One warning per kind, place and window: a re-run scan does not duplicate it.
    dedup_key: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(48))
    period: Mapped[str] = mapped_column(String(16))
    title_zh: Mapped[str] = mapped_column(String(300))
    title_en: Mapped[str] = mapped_column(String(300))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rectification: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="open")   # open | acknowledged
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(160))
    ack_note: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (UniqueConstraint("dedup_key"),)


class RectificationCase(Base):
    """整改: opened automatically when a community's satisfaction falls below the floor; community or street
    staff of that place move it opened → in_progress → closed (closing needs a note). Each step keeps who and
    when, and `history` lists every step in order."""

    __tablename__ = "rectification_cases"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    warning_id: Mapped[str] = mapped_column(String(36), ForeignKey("warnings.id"), unique=True)
    scope: Mapped[str] = mapped_column(String(32), index=True)     # the community
    period: Mapped[str] = mapped_column(String(16))
    reason_zh: Mapped[str] = mapped_column(String(300))
    reason_en: Mapped[str] = mapped_column(String(300))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="opened")   # opened | in_progress | closed
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_by: Mapped[str] = mapped_column(String(160))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_by: Mapped[str | None] = mapped_column(String(160))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(160))
    close_note: Mapped[str | None] = mapped_column(String(2000))
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
