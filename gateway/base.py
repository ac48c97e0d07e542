"""The gateway's declarative base and the tables every service has (outbox, idempotency keys)."""
from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from common.db import make_metadata
from common.models import IdempotencyMixin, OutboxMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxMixin, Base):
    pass


class IdempotencyRecord(IdempotencyMixin, Base):
    pass
