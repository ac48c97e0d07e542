"""The `emergency.` feed: a snapshot of an emergency request for svc_residents' call-out (ADR 0007)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.outbox import event_row, record_event
from svc_services.base import OutboxEvent

FEED = "emergency."


def snapshot(req: Any) -> dict[str, Any]:
    """Where, for whom and in which state: no name, phone or description (svc_residents has the person)."""
    return {"state": req.state, "grid": req.grid, "community": req.community, "person_id": req.person_id,
            "item_code": req.item_code, "channel": req.channel, "submitted_at": req.created_at.isoformat(),
            "version": req.version}


def submitted_row(req: Any, now: datetime) -> dict[str, Any]:
    """The outbox row written with the submission (the intake writes rows, not ORM objects)."""
    return event_row(f"{FEED}changed", subject=req.id, data=snapshot(req), now=now)


def record_change(session: AsyncSession, req: Any, now: datetime) -> None:
    if req.priority == "emergency":
        record_event(session, OutboxEvent, f"{FEED}changed", subject=req.id, data=snapshot(req), now=now)
