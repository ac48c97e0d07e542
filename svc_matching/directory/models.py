"""The resource directory (社区资源清单), modelled on Open Referral HSDS 3.0."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_matching.base import Base

TAXONOMIES = ("category", "eligibility")


class TaxonomyTerm(Base):
    """HSDS taxonomy_term: service categories (taxonomy "category") and eligible groups ("eligibility")."""

    __tablename__ = "taxonomy_terms"
    __table_args__ = (UniqueConstraint("taxonomy", "code"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    taxonomy: Mapped[str] = mapped_column(String(32), index=True)
    code: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("taxonomy_terms.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    alternate_name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(200))
    website: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(32))
    uscc: Mapped[str | None] = mapped_column(String(18), unique=True)
    legal_status: Mapped[str | None] = mapped_column(String(64))
    community: Mapped[str | None] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class Location(Base):
    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    location_type: Mapped[str] = mapped_column(String(16), default="physical")
    address: Mapped[str | None] = mapped_column(String(300))
    place_code: Mapped[str | None] = mapped_column(String(24), index=True)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Service(Base):
    __tablename__ = "services"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    alternate_name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24), default="active")
    fees: Mapped[str] = mapped_column(String(16), default="free")
    fees_description: Mapped[str | None] = mapped_column(Text)
    eligibility_description: Mapped[str | None] = mapped_column(Text)
    minimum_age: Mapped[int | None] = mapped_column(Integer)
    maximum_age: Mapped[int | None] = mapped_column(Integer)
    service_area_radius_m: Mapped[float | None] = mapped_column(Float)
    service_area_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    department: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class ServiceAttribute(Base):
    """HSDS attribute: links a service to a taxonomy term (category or eligibility)."""

    __tablename__ = "service_attributes"
    __table_args__ = (UniqueConstraint("service_id", "taxonomy_term_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), index=True)
    taxonomy_term_id: Mapped[str] = mapped_column(ForeignKey("taxonomy_terms.id"), index=True)


class ServiceAtLocation(Base):
    __tablename__ = "service_at_location"
    __table_args__ = (UniqueConstraint("service_id", "location_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), index=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)


class Schedule(Base):
    """HSDS schedule, weekly recurrence (freq WEEKLY, byday, opens_at/closes_at in Asia/Shanghai)."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), index=True)
    freq: Mapped[str] = mapped_column(String(16), default="WEEKLY")
    byday: Mapped[str] = mapped_column(String(32))
    opens_at: Mapped[str] = mapped_column(String(5))
    closes_at: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Shanghai")
    description: Mapped[str | None] = mapped_column(Text)


class ServiceCapacity(Base):
    """HSDS service_capacity: how much the service can take per period."""

    __tablename__ = "service_capacity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), unique=True)
    unit: Mapped[str] = mapped_column(String(32), default="人次/周")
    maximum: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    updated: Mapped[datetime] = mapped_column(UTCDateTime())


