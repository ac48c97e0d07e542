"""Request dependencies svc_matching's endpoints share beyond `common.deps`: `Idempotent`, an Idempotency-Key kept in
svc_matching's own idempotency table (`common.idempotency.idempotent_post`)."""
from __future__ import annotations

from common.idempotency import idempotent_post
from svc_matching.base import IdempotencyRecord

Idempotent = idempotent_post(IdempotencyRecord)
