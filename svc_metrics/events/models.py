"""The event store: every domain event exactly once (primary key event_id), as it arrived."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_metrics.base import Base


class StoredEvent(Base):
    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str | None] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(32))
    grid: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(64))
    # The entity whose measurements this event changes (a request, a need, a person …); derived at ingest.
    entity_kind: Mapped[str] = mapped_column(String(24))
    entity_id: Mapped[str] = mapped_column(String(96))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_events_entity", "entity_kind", "entity_id"),
    )
