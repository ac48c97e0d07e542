"""Tables of the notification engine: messages (the inbox), deliveries (the queue of outside channels), attempts
(the log of every try), recipients' settings (language, opt-outs) and staff contacts."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class Notification(Base):
    """One message to one recipient: its inbox entry. `recipient` is `person:<id>` or `user:<username>`;
    (event_key, recipient) is unique, so an event handled twice stores (and sends) nothing more."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("event_key", "recipient"),
                      Index("ix_notifications_recipient_id", "recipient", "id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(100))
    event_key: Mapped[str] = mapped_column(String(120))
    category: Mapped[str] = mapped_column(String(32))
    template: Mapped[str] = mapped_column(String(48))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    urgency: Mapped[str] = mapped_column(String(16))  # normal | urgent | emergency | safety
    language: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(80))  # what it is about (a request id …)
    community_code: Mapped[str | None] = mapped_column(String(24))
    grid_code: Mapped[str | None] = mapped_column(String(24))
    # why no outside channel carries it (opted_out, no_channel, cap): the inbox entry still stands
    skipped: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Delivery(Base):
    """A message's way out through the outside channels: `channels` is the plan in order of preference (the
    next is tried when one fails for good); the scheduler claims due rows (state queued, or a lapsed lease)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id"), index=True)
    channels: Mapped[list[str]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(default=0)  # the channel now tried: channels[position]
    tries: Mapped[int] = mapped_column(default=0)  # tries on that channel
    # queued → sending (claimed) → sent (handed over; a receipt may follow) → delivered; failed / unknown (no
    # receipt by the deadline) / skipped at the end
    state: Mapped[str] = mapped_column(String(16))
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # handed over on this channel: its receipt's clock
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Attempt(Base):
    """Every try on a channel and its result, and every skip (append-only)."""

    __tablename__ = "notification_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("notification_deliveries.id"), index=True)
    notification_id: Mapped[str] = mapped_column(String(36), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))  # sent | delivered | failed | unknown | skipped
    detail: Mapped[str | None] = mapped_column(String(300))
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class RecipientSettings(Base):
    """A recipient's own choices: the language of their messages and the categories they opted out of (PIPL);
    safety messages ignore the opt-outs."""

    __tablename__ = "notification_settings"

    recipient: Mapped[str] = mapped_column(String(100), primary_key=True)
    language: Mapped[str] = mapped_column(String(8), default="zh")
    opted_out: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(160))
    version: Mapped[int] = mapped_column(default=1)


class StaffContact(Base):
    """How a staff member or grid worker (a gateway account: the gateway keeps no phone for them) is reached:
    registered here by community staff, so svc_residents, the one service holding phones, sends to them too.
    `scope` is the one their token carries (`grid:<code>`, `community:<code>`, `street:<code>`, `dept:<code>`,
    `provider:<id>`): who is told about a place's, a department's or a provider's work."""

    __tablename__ = "staff_contacts"
    __table_args__ = (UniqueConstraint("user_id"), Index("ix_staff_contacts_scope_role", "scope", "role"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(80))
    display_name: Mapped[str | None] = mapped_column(String(100))
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_masked: Mapped[str | None] = mapped_column(String(11))
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(default=1)
