from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, String, false, true
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class CatalogueItem(Base):
    """A catalogue entry (事项): its stable code and which version is in force. The content lives in versions."""

    __tablename__ = "catalogue_items"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    current_version: Mapped[int] = mapped_column(default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The area the item is offered in and owned at (a division code); None: the district-wide catalogue. With the
    # version's `department` it says who may change the item (catalogue.service.may_write).
    scope: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CatalogueItemVersion(Base):
    """One immutable version of an item. Editing an item adds a version; requests keep the one they used."""

    __tablename__ = "catalogue_item_versions"

    item_code: Mapped[str] = mapped_column(ForeignKey("catalogue_items.code"), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(2000))
    category: Mapped[str] = mapped_column(String(32), index=True)
    tier: Mapped[str] = mapped_column(String(16))
    department: Mapped[str] = mapped_column(String(32))
    response_hours: Mapped[float] = mapped_column(Float)
    resolution_hours: Mapped[float] = mapped_column(Float)
    working_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    kiosk_instant: Mapped[bool] = mapped_column(Boolean, default=False)
    # A person's own affairs (care, home services, certificates, a call for help): the public Open311 feed never
    # shows its requests' descriptions or addresses (open311.service.request_out)
    personal: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # 服务预约: the item is handled at a booked time (a counter's slot, a home visit). Which slots serve it is
    # svc_matching's (bookable resources with this `catalogue_item_code`); a request carries its appointment.
    appointment_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    materials: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(160))
