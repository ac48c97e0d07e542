"""svc_metrics' declarative base (its own metadata, for its own migrations) and the tables every service has (outbox,
idempotency keys), made by common.models.service_base."""
from __future__ import annotations

from common.models import service_base

Base, OutboxEvent, IdempotencyRecord = service_base()
