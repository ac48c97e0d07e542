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


# the states in which svc_residents' call-out goes on calling (its `callout.chain.WAITING`): nobody has taken the
# emergency up yet
CALLING = frozenset({"submitted", "escalated"})


def record_change(session: AsyncSession, req: Any, now: datetime, *, from_state: str) -> None:
    """A move of an emergency request, for the call-out, when it changes what the call-out does: the request taken
    up (out of CALLING). A move within CALLING (the SLA's escalation) tells it nothing, so no row: such snapshots
    queued in the emergency lane ahead of new alarms' first snapshots (each snapshot is whole, versions only
    grow, so a skipped one loses nothing; the priority is set at submission, whose snapshot starts the call-out)."""
    if req.priority == "emergency" and not (from_state in CALLING and req.state in CALLING):
        record_event(session, OutboxEvent, f"{FEED}changed", subject=req.id, data=snapshot(req), now=now)
