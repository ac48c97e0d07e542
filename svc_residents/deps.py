"""Request dependencies svc_residents's endpoints share beyond `common.deps`: `Idempotent`, an Idempotency-Key kept in
svc_residents's own idempotency table (`common.idempotency.idempotent_post`)."""
from __future__ import annotations

from common.idempotency import idempotent_post
from svc_residents.base import IdempotencyRecord

Idempotent = idempotent_post(IdempotencyRecord)
