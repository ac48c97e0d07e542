"""Accounts bound to persons: a resident's account at the gateway (its username), real-name bound to one person
after 公安 confirmed the name and ID number (or waiting for staff to make the record)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class AccountBinding(Base):
    """One account's real-name binding. `bound`: to `person_id`; `pending`: 公安 confirmed the name and number
    but no record holds that number, so the community the resident named confirms (creating the record in a
    household) or refuses. The consent to the 公安 check is recorded here as given, before the check ran (and on
    the person's consents once there is one)."""

    __tablename__ = "account_bindings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # bound | pending | refused
    name: Mapped[str] = mapped_column(String(50))
    id_number_enc: Mapped[str] = mapped_column(Text)
    id_number_bidx: Mapped[str] = mapped_column(String(128), unique=True)
    id_number_masked: Mapped[str] = mapped_column(String(18))
    person_id: Mapped[str | None] = mapped_column(String(36), index=True)
    community_code: Mapped[str | None] = mapped_column(String(24), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    consent_text: Mapped[str] = mapped_column(String(300))
    consented_at: Mapped[datetime] = mapped_column(UTCDateTime())
    gongan_message: Mapped[str | None] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(160))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(String(200))
