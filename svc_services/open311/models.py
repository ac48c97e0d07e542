from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class RequestPublication(Base):
    """The description of a request as staff approved it for the public Open311 feed (issue 23, finding 6).

    Numbers are masked automatically on every public read; names and home addresses typed in free text are not
    something a pattern finds, so a description is public only once staff have read it (and edited it, if need
    be) and published it here. `description` None: withdrawn from publication. Requests of personal items are
    never published (open311.publication)."""

    __tablename__ = "request_publications"

    request_id: Mapped[str] = mapped_column(ForeignKey("service_requests.id"), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    approved_by: Mapped[str] = mapped_column(String(160))
    approved_role: Mapped[str] = mapped_column(String(32))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime())
