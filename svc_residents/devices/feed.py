"""The `alarm.` feed (ADR 0022): a device's alarm, written to the outbox in the alarm's own transaction and
delivered by its relay to svc_services (`PUT /services/v1/device_alarms/{alarm_id}`), whose request intake files
it as an emergency request (channel `iot`). The relay is woken by the commit (an urgent feed), not by its poll."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.outbox import record_event
from svc_residents.base import OutboxEvent

FEED = "alarm."


def record_raised(session: AsyncSession, *, alarm_id: str, data: dict[str, Any], now: datetime) -> None:
    record_event(session, OutboxEvent, f"{FEED}raised", subject=alarm_id, data={**data, "version": 1}, now=now,
                 community=(data.get("grid") or "")[:12] or None, grid=data.get("grid"))
