"""The one place the call-out hands calls to the notification engine (svc_residents/notifications)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession


async def call(session: AsyncSession, *, attempt_id: str, request_id: str, duty: str, targets: list[dict],
               channels: tuple[str, ...], now: datetime) -> None:
    """Hand one step's calls (voice + SMS + push at once) to the channels, in the caller's transaction."""
    return None
