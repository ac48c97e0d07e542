from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (JSON, Boolean, Float, ForeignKey, ForeignKeyConstraint, Index, String, Text, UniqueConstraint,
                        text)
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class ServiceRequest(Base):
    """A service request / work order (诉求 / 工单). `version` counts timeline entries: entry n moved it to version n."""

    __tablename__ = "service_requests"
    __table_args__ = (
        ForeignKeyConstraint(["item_code", "item_version"],
                             ["catalogue_item_versions.item_code", "catalogue_item_versions.version"]),
        Index("ix_service_requests_grid_state", "grid", "state"),
        Index("ix_service_requests_person", "person_id", "id"),
        Index("ix_service_requests_open_due", "state", "resolution_due_at"),  # also serves state alone
        # Every submission writes every index of this table, so each one earns its place (ADR 0011). Overdue and
        # assigned requests are the few a list or a check looks for; a new request is neither, and stays out.
        # A list filtered by channel or priority alone reads the primary key newest first and stops at its limit.
        Index("ix_service_requests_overdue", "overdue", sqlite_where=text("overdue = 1"),
              postgresql_where=text("overdue")),
        Index("ix_service_requests_assignee_id", "assignee_id", sqlite_where=text("assignee_id IS NOT NULL"),
              postgresql_where=text("assignee_id IS NOT NULL")),
        # possible duplicates by grid: open requests of one item in one grid, newest first (ties by id), read in
        # index order up to the LIMIT; its leading column also serves lookups by item alone
        Index("ix_service_requests_item_grid_created_id", "item_code", "grid", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    item_code: Mapped[str] = mapped_column(String(32))
    item_version: Mapped[int] = mapped_column()
    category: Mapped[str] = mapped_column(String(32))
    department: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    # The resident the request is for (None for grid events and sensor alarms without a person).
    person_id: Mapped[str | None] = mapped_column(String(36))
    submitted_by: Mapped[str] = mapped_column(String(160))      # member/user that submitted
    submitted_role: Mapped[str] = mapped_column(String(32))
    proxy_user: Mapped[str | None] = mapped_column(String(160))  # 代办: the acting person, when not the resident
    description: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    address: Mapped[str | None] = mapped_column(String(200))
    lat: Mapped[float | None] = mapped_column(Float)
    long: Mapped[float | None] = mapped_column(Float)
    grid: Mapped[str] = mapped_column(String(24))
    community: Mapped[str] = mapped_column(String(24), index=True)
    street: Mapped[str] = mapped_column(String(24))
    priority: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(default=1)
    escalation_level: Mapped[str] = mapped_column(String(16), default="grid")
    assignee_kind: Mapped[str | None] = mapped_column(String(16))
    assignee_id: Mapped[str | None] = mapped_column(String(80))
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    merged_into: Mapped[str | None] = mapped_column(ForeignKey("service_requests.id"))
    rating: Mapped[int | None] = mapped_column()
    rating_comment: Mapped[str | None] = mapped_column(String(1000))
    # Open311 media_url (a photo the submitter links to); public in GeoReport reads.
    media_url: Mapped[str | None] = mapped_column(String(500))
    # The need recorded in svc_matching for dispatch recommendations (one per request, reused).
    matching_need_id: Mapped[str | None] = mapped_column(String(36))
    # The last answer of svc_matching for this request (candidates with reasons, or "unavailable"): dispatch by
    # `candidate_rank` picks from it, and a manual dispatch records that matching was unavailable.
    matching_candidates: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # SLA
    response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    start_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())    # emergency: handling starts by
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    response_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    start_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution_breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # milestones
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TimelineEntry(Base):
    """One step of a request (immutable, append-only): who did what, in which role, when, why."""

    __tablename__ = "request_timeline"
    __table_args__ = (UniqueConstraint("request_id", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_requests.id"))
    seq: Mapped[int] = mapped_column()
    action: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(160))
    role: Mapped[str] = mapped_column(String(32))
    acting_for: Mapped[str | None] = mapped_column(String(36))
    note: Mapped[str | None] = mapped_column(String(2000))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
