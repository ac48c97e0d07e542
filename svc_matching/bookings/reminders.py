"""Reminders before a booking or an activity starts: a small scan of claimed rows (the evening before at 18:00
Asia/Shanghai, or 2 h before when booked after that; bookings.notices.remind_at).

Each reminder is claimed by a conditional UPDATE (`reminded_at IS NULL` → now) before its notice row is written,
in one transaction: two replicas scanning at once claim each row once (the loser's UPDATE matches nothing), and a
cancelled booking or sign-up is never reminded (only confirmed / signed-up rows are scanned, and the claim re-checks
the state). Time only from the injected clock.
"""
from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.periodic import run_periodically
from svc_matching.activities.models import Activity, ActivitySignup
from svc_matching.bookings.models import BookableResource, Booking
from svc_matching.bookings.notices import REMIND_HORIZON, booking_notice, remind_at, signup_notice


async def _claim(session: AsyncSession, model, row_id: str, state: str, now: datetime) -> bool:
    won = await session.execute(update(model).where(model.id == row_id, model.state == state,
                                                    model.reminded_at.is_(None))
                                .values(reminded_at=now).returning(model.id))
    return won.first() is not None


async def remind_due(session: AsyncSession, now: datetime, limit: int = 200) -> int:
    """Write the reminders due at `now` (in the caller's transaction); how many were written."""
    sent = 0
    bookings = await session.execute(
        select(Booking, BookableResource).join(BookableResource, BookableResource.id == Booking.resource_id)
        .where(Booking.state == "confirmed", Booking.reminded_at.is_(None), Booking.person_id.is_not(None),
               Booking.starts_at > now, Booking.starts_at <= now + REMIND_HORIZON)
        .order_by(Booking.starts_at, Booking.id).limit(limit))
    for b, res in bookings.all():
        if remind_at(b.starts_at, b.updated_at) <= now and await _claim(session, Booking, b.id, "confirmed", now):
            booking_notice(session, b, res, "reminder", now)
            sent += 1
    signups = await session.execute(
        select(ActivitySignup, Activity).join(Activity, Activity.id == ActivitySignup.activity_id)
        .where(ActivitySignup.state == "signed_up", ActivitySignup.reminded_at.is_(None), Activity.status == "open",
               Activity.starts_at > now, Activity.starts_at <= now + REMIND_HORIZON)
        .order_by(Activity.starts_at, ActivitySignup.id).limit(limit))
    for s, a in signups.all():
        if remind_at(a.starts_at, s.updated_at) <= now and await _claim(session, ActivitySignup, s.id, "signed_up",
                                                                         now):
            signup_notice(session, s, a, "reminder", now)
            sent += 1
    return sent


async def reminder_sweeper(app: FastAPI, stop: asyncio.Event) -> None:
    """Background job: write the due reminders every `reminder_sweep_seconds`."""
    settings = app.state.settings

    async def sweep() -> None:
        async with app.state.db.session() as session, session.begin():
            await remind_due(session, app.state.clock.now())

    await run_periodically("svc_matching/booking-reminders", sweep, stop, interval=settings.reminder_sweep_seconds)
