"""The `notice.` feed for warnings: the staff of a warning's place are told when it opens (docs/adr/0017;
svc_residents/notifications/rules.py: the community's staff contacts, and a grid's workers for a grid warning).

Written in the transaction that opens the warning (alerts/service.py `record`), through the outbox (ADR 0007: one
row per warning, its subject a fresh id, delivered as `PUT /residents/v1/notices/{subject}`, which stores nothing
twice); a re-run scan opens nothing and so writes nothing. The row carries the warning's id, place and title.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from common.ids import new_id
from common.outbox import record_event
from svc_metrics.base import OutboxEvent

FEED = "notice."


def warning_notice(session: AsyncSession, w, now: datetime) -> None:
    scope = w.scope or ""
    community = scope[:12] if len(scope) >= 12 else None
    record_event(session, OutboxEvent, f"{FEED}warning.opened", subject=new_id(), now=now,
                 data={"event": "warning.opened", "subject": w.id, "community": community,
                       "grid": scope if len(scope) == 15 else None, "street": scope if len(scope) == 9 else None,
                       "title": w.title_zh[:100]})
