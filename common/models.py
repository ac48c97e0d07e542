"""Tables every service carries in its own database: the transactional outbox and idempotency records."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from common.db import UTCDateTime, make_metadata

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class OutboxMixin:
    """Domain events written in the same transaction as the change they describe."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    community: Mapped[str | None] = mapped_column(String(32))
    grid: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))

    @declared_attr.directive
    def __table_args__(cls):  # noqa: N805 - a declared_attr takes the class
        return (Index("ix_outbox_pending", "delivered_at", "next_attempt_at"),)


class IdempotencyMixin:
    """The first response to a POST with an Idempotency-Key, replayed for retries of the same request."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[str] = mapped_column(String(160), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    response_body: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


def service_base() -> tuple[type[DeclarativeBase], type[OutboxMixin], type[IdempotencyMixin]]:
    """A service's own declarative base (its own metadata, for its own Alembic history) with the two tables every
    service has: `Base, OutboxEvent, IdempotencyRecord = service_base()` in the service's base.py."""

    class Base(DeclarativeBase):
        metadata = make_metadata()

    class OutboxEvent(OutboxMixin, Base):
        pass

    class IdempotencyRecord(IdempotencyMixin, Base):
        pass

    return Base, OutboxEvent, IdempotencyRecord
