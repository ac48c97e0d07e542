from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class RequestMaterial(Base):
    """One required material of one request (once-only, 一次采集): fetched from the department that holds it through
    the gateway's exchange, or awaiting the resident's upload. `status`: fetched / pending (to fetch, or a failed
    fetch to retry) / awaiting_upload / uploaded (a file came, staff to review) / verified / rejected (with the reason;
    a new file may come) / not_applicable (no person to ask about)."""

    __tablename__ = "request_materials"
    __table_args__ = (UniqueConstraint("request_id", "code"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_requests.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(16))            # exchange / upload (from the item version)
    department: Mapped[str | None] = mapped_column(String(32))
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # where and when it came from: the department, the exchange path, the gateway's request id (message log)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fetched_from: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the department's answer (only the fields its grant lets through; never the ID number that was asked about)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # an uploaded file (svc_services.attachments) and staff's review of it: uploaded → verified / rejected (reason)
    attachment_id: Mapped[str | None] = mapped_column(String(36))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reviewed_by: Mapped[str | None] = mapped_column(String(160))
    review_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
