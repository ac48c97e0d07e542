from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class Person(Base):
    """人 (一人一档). The ID number and phone are stored only encrypted (AES-GCM, key id inside the token),
    with a keyed blind index for exact lookup and a pre-computed mask for ordinary output."""

    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    name: Mapped[str] = mapped_column(String(50), index=True)
    id_number_enc: Mapped[str] = mapped_column(Text)
    # One ID number is one person (一人一档): the unique blind index makes a second record impossible.
    id_number_bidx: Mapped[str] = mapped_column(String(128), unique=True)
    id_number_masked: Mapped[str] = mapped_column(String(18))
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_bidx: Mapped[str | None] = mapped_column(String(128), index=True)
    phone_masked: Mapped[str | None] = mapped_column(String(11))
    birth_date: Mapped[date] = mapped_column(Date, index=True)
    sex: Mapped[str] = mapped_column(String(1))
    residency_type: Mapped[str] = mapped_column(String(16))
    relation_to_head: Mapped[str | None] = mapped_column(String(20))
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    accessibility_needs: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Denormalised from the household, so scope checks and searches need no join.
    grid_code: Mapped[str] = mapped_column(String(24), index=True)
    community_code: Mapped[str] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)
    # Set when staff merged this record into another (a duplicate created before verification): the record
    # stays, read-only, as the trail of what was merged; lists and member lists leave it out.
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)
    merged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The requester-profile feed to svc_services (persons/profile_feed.py): how many snapshots were written, and
    # a digest of the last one, so an edit that leaves birth date and tags as they were writes nothing.
    profile_version: Mapped[int] = mapped_column(default=0, server_default="0")
    profile_digest: Mapped[str | None] = mapped_column(String(64))
    # The elector feed to svc_services' deliberation (persons/elector_feed.py): the same, for place, household
    # and head flag, so a household edit that leaves a member's eligibility as it was writes nothing.
    elector_version: Mapped[int] = mapped_column(default=0, server_default="0")
    elector_digest: Mapped[str | None] = mapped_column(String(64))


class PersonChange(Base):
    """The change history of a person's values that came from more than one source: a department answer
    replacing a staff-entered value, a tag expired by a department, what a merge moved. Append-only."""

    __tablename__ = "person_changes"
    __table_args__ = (Index("ix_person_changes_person", "person_id", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    field: Mapped[str] = mapped_column(String(64))  # "tag:dibao", "residency_type", "merge"
    change: Mapped[str] = mapped_column(String(32))  # set / confirmed / upgraded / expired / conflict / merged…
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(64))  # "department:minzheng", "merge", "staff"
    actor: Mapped[str] = mapped_column(String(160))
    verification_id: Mapped[str | None] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PersonTag(Base):
    """A special-group tag (特殊群体) with its source, verification and validity."""

    __tablename__ = "person_tags"
    __table_args__ = (UniqueConstraint("person_id", "code"), Index("ix_person_tags_code_person", "code", "person_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    source_department: Mapped[str | None] = mapped_column(String(32))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(String(200))
    recorded_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Consent(Base):
    """An append-only consent record per purpose; the newest per purpose is the one in force."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_person_purpose", "person_id", "purpose", "recorded_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    channel: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(160))
    recorded_role: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(200))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
