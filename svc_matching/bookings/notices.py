"""The `notice.` feed: the booking and sign-up steps a resident is told about, for svc_residents' notification
engine (docs/adr/0017; svc_residents/notifications/rules.py says who is told what, in which words).

Written in the same transaction as the step, through the outbox (ADR 0007: one row per notice, its subject a fresh
id, delivered as `PUT /residents/v1/notices/{subject}`). The row carries the resource's or activity's name and the
start time, so the words need nothing more from svc_matching. Only bookings for a person are told: an
organisation's booking has nobody in svc_residents to tell.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import SHANGHAI
from common.ids import new_id
from common.outbox import record_event
from svc_matching.base import OutboxEvent

FEED = "notice."
REMIND_AT = time(18, 0)              # the evening before (Asia/Shanghai) …
REMIND_LATE = timedelta(hours=2)     # … or 2 h before when booked after that evening
REMIND_HORIZON = timedelta(hours=30)  # the earliest a reminder can be due: 18:00 the day before a 23:59 start


def remind_at(starts_at: datetime, booked_at: datetime) -> datetime:
    """When a reminder is due: 18:00 the evening before, or 2 h before if booked after that."""
    day_before = starts_at.astimezone(SHANGHAI).date() - timedelta(days=1)
    evening = datetime.combine(day_before, REMIND_AT, tzinfo=SHANGHAI)
    return evening if booked_at < evening else starts_at - REMIND_LATE


def record_notice(session: AsyncSession, event: str, *, person_id: str | None, subject: str, place_code: str,
                  name: str, starts_at: datetime, now: datetime, note: str | None = None) -> None:
    if person_id is None:
        return
    data = {"event": event, "person_id": person_id, "subject": subject, "community": place_code[:12],
            "grid": place_code if len(place_code) == 15 else None, "item_name": name[:100],
            "starts_at": starts_at.isoformat(), "note": note}
    record_event(session, OutboxEvent, f"{FEED}{event}", subject=new_id(), data=data, now=now)


def booking_notice(session: AsyncSession, b, res, event: str, now: datetime, note: str | None = None) -> None:
    record_notice(session, f"booking.{event}", person_id=b.person_id, subject=b.id, place_code=b.place_code,
                  name=res.name, starts_at=b.starts_at, now=now, note=note)


def signup_notice(session: AsyncSession, s, a, event: str, now: datetime) -> None:
    record_notice(session, f"signup.{event}", person_id=s.person_id, subject=s.id, place_code=a.place_code,
                  name=a.title, starts_at=a.starts_at, now=now)
