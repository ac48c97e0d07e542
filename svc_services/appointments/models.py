"""What svc_services knows of a request's appointments (服务预约): svc_matching's bookings for it, as its feed
(`appointment.changed`, svc_matching/README.md) last told. The booking itself (slots, capacity, its own history) is svc_matching's."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class RequestAppointment(Base):
    """One svc_matching booking for a request: where and when it stands now, at the feed `version` applied;
    `last_seq` is the booking step last copied onto the request's timeline (each step once)."""

    __tablename__ = "request_appointments"
    __table_args__ = (Index("ix_request_appointments_request", "request_id", "updated_at"),)

    booking_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_requests.id"))
    resource_id: Mapped[str] = mapped_column(String(36))
    resource_name: Mapped[str] = mapped_column(String(200))
    place_code: Mapped[str] = mapped_column(String(24))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
