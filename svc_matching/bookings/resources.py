"""Bookable resources: who creates them (staff of their place, ops), who may book them, their free slots.

Resources and their free slots are public to every signed-in caller, like the directory they sit beside
(svc_matching/access.py); who may book is decided per resource (`bookers`, `booker_scope`)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import SHANGHAI
from common.errors import Forbidden, NotFound, invalid
from common.ids import new_id
from common.lookup import get_or_404
from common.outbox import record_event
from svc_matching.access import sees_place
from svc_matching.base import OutboxEvent
from svc_matching.bookings.calendar import day_slots, open_minutes
from svc_matching.bookings.models import BookableResource, BookingSlot
from svc_matching.bookings.schemas import ResourceCreate

MANAGERS = ("community_staff", "street_staff", "ops")
NOT_FOUND = ("可预约资源不存在", "Bookable resource not found")
NEXT_FREE = 5


def may_manage(principal: Principal, place_code: str) -> bool:
    """Community or street staff of the resource's place, or ops (a grid worker books, but does not set rooms up)."""
    return principal.role == "ops" or (principal.role in MANAGERS and sees_place(principal, place_code))


async def create_resource(session: AsyncSession, principal: Principal, body: ResourceCreate, *, now: datetime,
                          resource_id: str | None = None) -> BookableResource:
    if not may_manage(principal, body.place_code):
        raise Forbidden(("只能为本辖区设置可预约资源", "You may only set up bookable resources in your place"),
                        code="booking.not_manager")
    scope = body.booker_scope or body.place_code[:12]
    if not (scope.startswith(body.place_code[:len(scope)]) or body.place_code.startswith(scope)):
        raise invalid("booker_scope", "booking.scope_elsewhere", "可预约范围须包含或属于资源所在地",
                      "The booker scope must contain or lie within the resource's place")
    res = BookableResource(
        id=resource_id or new_id(), name=body.name, kind=body.kind, place_code=body.place_code,
        location_id=body.location_id, opening_hours={k: list(v) for k, v in body.opening_hours.items()},
        closed_dates=[d.isoformat() for d in body.closed_dates], slot_minutes=body.slot_minutes,
        capacity=body.capacity, bookers=list(dict.fromkeys(body.bookers)), booker_scope=scope,
        advance_days=body.advance_days, weekly_limit=body.weekly_limit, approval_required=body.approval_required,
        no_show_limit=body.no_show_limit, no_show_window_days=body.no_show_window_days,
        no_show_block_days=body.no_show_block_days, catalogue_item_code=body.catalogue_item_code,
        status="active", version=1, created_at=now, updated_at=now)
    session.add(res)
    await session.flush()
    week = open_minutes(res.opening_hours, res.closed_dates, res.slot_minutes, now.astimezone(SHANGHAI).date(), 7)
    record_event(session, OutboxEvent, "bookable_resource.listed", subject=res.id,
                 data={"kind": res.kind, "capacity": res.capacity, "slot_minutes": res.slot_minutes,
                       "open_minutes_per_week": week, "place_minutes_per_week": week * res.capacity,
                       "catalogue_item_code": res.catalogue_item_code},
                 community=res.place_code[:12], grid=res.place_code if len(res.place_code) == 15 else None, now=now)
    return res


async def get_resource(session: AsyncSession, resource_id: str) -> BookableResource:
    return await get_or_404(session, BookableResource, resource_id, NotFound("booking.resource_not_found", NOT_FOUND))


async def resource_for_booking(session: AsyncSession, resource_id: str, field: str = "resource_id"
                               ) -> BookableResource:
    """The active resource a booking names, or 422 naming the field."""
    res = await session.get(BookableResource, resource_id)
    if res is None or res.status != "active":
        raise invalid(field, "booking.resource_unknown", "可预约资源不存在或已停用",
                      "Unknown or inactive bookable resource")
    return res


def list_stmt(*, place_code: str | None, kind: str | None, item_code: str | None):
    stmt = select(BookableResource).where(BookableResource.status == "active")
    if place_code:
        stmt = stmt.where(BookableResource.place_code.startswith(place_code, autoescape=True))
    if kind:
        stmt = stmt.where(BookableResource.kind == kind)
    if item_code:
        stmt = stmt.where(BookableResource.catalogue_item_code == item_code)
    return stmt


async def taken_between(session: AsyncSession, resource_id: str, start: datetime, end: datetime
                        ) -> dict[datetime, int]:
    rows = await session.execute(select(BookingSlot.starts_at, BookingSlot.taken).where(
        BookingSlot.resource_id == resource_id, BookingSlot.starts_at >= start, BookingSlot.starts_at < end))
    return {s: t for s, t in rows.all()}


async def free_slots(session: AsyncSession, res: BookableResource, first: date, days: int, *,
                     after: datetime | None = None, limit: int | None = None) -> list[dict]:
    """The resource's slots from local date `first` for `days` days with their free places (after `after`, only
    those with room, at most `limit`), read in one query."""
    start = datetime.combine(first, datetime.min.time(), SHANGHAI)
    taken = await taken_between(session, res.id, start, start + timedelta(days=days))
    out = []
    for i in range(days):
        for s, e in day_slots(res.opening_hours, res.closed_dates, res.slot_minutes, first + timedelta(days=i)):
            free = res.capacity - taken.get(s, 0)
            if after is not None and (s <= after or free <= 0):
                continue
            out.append({"starts_at": s.astimezone(timezone.utc), "ends_at": e.astimezone(timezone.utc),
                        "capacity": res.capacity, "free": free})
            if limit is not None and len(out) >= limit:
                return out
    return out


async def next_free(session: AsyncSession, res: BookableResource, after: datetime, now: datetime) -> list[dict]:
    """The next free slots after `after` within the resource's booking horizon (what a 409 offers instead)."""
    first = after.astimezone(SHANGHAI).date()
    horizon = (now + timedelta(days=res.advance_days)).astimezone(SHANGHAI).date()
    days = max(1, (horizon - first).days + 1)
    slots = await free_slots(session, res, first, days, after=max(after, now), limit=NEXT_FREE)
    return [{"starts_at": s["starts_at"].isoformat(), "free": s["free"]} for s in slots]


async def write_first(session: AsyncSession, res_id: str) -> None:
    """On SQLite, make the transaction's first statement a write, so it takes the single writer lock before it
    reads anything (bookings then run one after another; a read snapshot could not be upgraded)."""
    if session.bind.dialect.name == "sqlite":
        await session.execute(update(BookableResource).where(BookableResource.id == res_id)
                              .values(status=BookableResource.status).execution_options(synchronize_session=False))
