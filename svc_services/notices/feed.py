"""The `notice.` feed: the steps of a request someone is told about, for svc_residents' notification engine.

svc_residents holds the phones and decides who is told what (svc_residents/notifications/rules.py); svc_services
says what happened, in the same transaction as the step, through the outbox (ADR 0007: one row per notice, its
subject a fresh id, delivered as `PUT /residents/v1/notices/{subject}`, which stores nothing twice). The row carries
the person and the assignee (svc_metrics never sees it: feed prefixes are left out of its relay), the item's
name and the reason, so the words need nothing more from svc_services.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.ids import new_id
from common.outbox import record_event
from svc_services.base import OutboxEvent
from svc_services.catalogue.models import CatalogueItemVersion

FEED = "notice."
# the request events somebody is told about (the rest, e.g. started or rated, tell nobody)
TOLD = frozenset({"accepted", "rejected", "dispatched", "claimed", "resolved", "reopened", "escalated", "overdue"})


async def record_notice(session: AsyncSession, req: Any, event: str, now: datetime, *, note: str | None = None,
                        extra: dict[str, Any] | None = None) -> None:
    if event not in TOLD:
        return
    item = await session.get(CatalogueItemVersion, (req.item_code, req.item_version))
    extra = extra or {}
    assignee = None
    if req.assignee_kind:
        named = extra.get("assignee") or {}
        assignee = {"kind": req.assignee_kind, "id": req.assignee_id, "name": named.get("name")}
    data = {"event": f"request.{event}", "request_id": req.id, "person_id": req.person_id,
            "community": req.community, "grid": req.grid, "street": req.street, "department": req.department,
            "item_code": req.item_code, "item_name": item.name if item else None, "priority": req.priority,
            "escalation_level": req.escalation_level, "assignee": assignee, "note": note}
    if extra.get("breaches"):
        data["breaches"] = list(extra["breaches"])
    record_event(session, OutboxEvent, f"{FEED}request.{event}", subject=new_id(), data=data, now=now)
