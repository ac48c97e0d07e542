"""Bookings: who may book, the rules a request must meet, taking a place without double booking, the waitlist.

Taking a place is one conditional UPDATE of the slot's row (`taken = taken + 1 WHERE taken < capacity`) under a
CHECK constraint: on PostgreSQL the row lock makes a concurrent taker wait and re-check the condition, on SQLite
the transaction's first statement is a write (the single writer). One booker's requests are serialised too (a
transaction-scoped advisory lock on PostgreSQL), so the weekly limit and the own-overlap rule hold under retries
fired at once. Nothing here is a lock in process memory: two processes on one database behave as one.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, false, func, or_, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import SHANGHAI
from common.errors import Conflict, Forbidden, NotFound, check_version, invalid
from common.ids import new_id
from common.lookup import get_or_404
from common.outbox import record_event
from svc_matching.access import PLACE_STAFF, is_own, place_condition, sees_place
from svc_matching.base import OutboxEvent
from svc_matching.bookings import appointments, lifecycle as lc
from svc_matching.bookings.notices import booking_notice
from svc_matching.bookings.calendar import slot_at
from svc_matching.bookings.models import BookableResource, Booking, BookingBlock, BookingEntry, BookingSlot
from svc_matching.bookings.resources import next_free, resource_for_booking, write_first
from svc_matching.bookings.schemas import BookingCreate, TransitionBody
from svc_matching.directory.models import Organization
from svc_matching.people.places import known_person

NOT_FOUND = ("预约不存在或无权查看", "Booking not found")
CHECK_IN_EARLY = timedelta(minutes=30)


def _insert(session: AsyncSession):
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def covering_staff(principal: Principal, place_code: str) -> bool:
    return principal.role == "ops" or (principal.role in PLACE_STAFF and sees_place(principal, place_code))


def is_owner(principal: Principal, b: Booking) -> bool:
    if b.booker_kind == "organisation":
        return principal.role == "provider" and b.organization_id in principal.scope_values("provider")
    if b.person_id is not None and is_own(principal, b.person_id):
        return True
    return b.booker_kind == "staff" and b.booked_by == principal.caller


def may_see(principal: Principal, b: Booking) -> bool:
    return is_owner(principal, b) or covering_staff(principal, b.place_code)


def require_lister(principal: Principal) -> None:
    """Departments, member systems and evaluators read no personal record of svc_matching (access.py)."""
    if principal.role not in ("resident", "proxy", "provider", *PLACE_STAFF, "ops"):
        raise Forbidden((f"当前角色（{principal.role}）不能查看预约", f"Role {principal.role} may not list bookings"))


def visibility(principal: Principal):
    """The SQL condition of the bookings a caller may list."""
    if principal.role == "ops":
        return true()
    if principal.role in ("resident", "proxy"):
        return Booking.person_id == principal.person_id if principal.person_id else false()
    if principal.role == "provider":
        orgs = principal.scope_values("provider")
        return and_(Booking.booker_kind == "organisation", Booking.organization_id.in_(orgs)) if orgs else false()
    if principal.role in PLACE_STAFF:
        return or_(place_condition(principal, Booking.place_code), Booking.booked_by == principal.caller)
    return false()


async def get_booking(session: AsyncSession, principal: Principal, booking_id: str, *, for_update: bool = False
                      ) -> Booking:
    return await get_or_404(session, Booking, booking_id, NotFound("booking.not_found", NOT_FOUND),
                            visible=lambda b: may_see(principal, b), for_update=for_update)


async def _booker(session: AsyncSession, principal: Principal, res: BookableResource, body: BookingCreate
                  ) -> tuple[str, str | None, str | None]:
    """(booker kind, person, organisation) for this caller on this resource, or 403 with the reason."""
    refused = Forbidden(("您不在该资源的可预约范围内", "You may not book this resource"), code="booking.not_eligible")
    if principal.role in ("resident", "proxy"):
        person = principal.person_id
        if person is None or (body.person_id is not None and body.person_id != person):
            raise Forbidden(("只能为本人（或受托人）预约", "You may only book for yourself (or whom you act for)"),
                            code="booking.not_own")
    elif principal.role == "provider":
        orgs = principal.scope_values("provider")
        if "organisation" not in res.bookers or not orgs or body.person_id is not None:
            raise refused
        if await session.get(Organization, orgs[0]) is None:   # a registered organisation of the directory
            raise refused
        return "organisation", None, orgs[0]
    elif covering_staff(principal, res.place_code):
        if body.person_id is None:
            if "staff" not in res.bookers:
                raise refused
            return "staff", None, None
        person = body.person_id
    else:
        raise refused
    if "resident" not in res.bookers:
        raise refused
    place = await known_person(session, person)
    if place is None:
        if principal.role in ("resident", "proxy"):
            raise refused
        raise invalid("person_id", "booking.person_unknown", "居民不存在或不在您的辖区",
                      "Unknown person, or not within your places")
    if not place.grid_code.startswith(res.booker_scope) or not (
            principal.role in ("resident", "proxy") or covering_staff(principal, place.grid_code)):
        if principal.role in ("resident", "proxy"):
            raise refused
        raise invalid("person_id", "booking.person_unknown", "居民不存在或不在您的辖区",
                      "Unknown person, or not within your places")
    return "resident", person, None


def _holder(kind: str, person: str | None, org: str | None, principal: Principal):
    """The booker's identity as a column condition (whose weekly limit and own bookings count)."""
    if person is not None:
        return Booking.person_id == person, f"person:{person}"
    if org is not None:
        return and_(Booking.booker_kind == "organisation", Booking.organization_id == org), f"org:{org}"
    return and_(Booking.booker_kind == "staff", Booking.booked_by == principal.caller), f"staff:{principal.caller}"


def _check_time(res: BookableResource, starts_at: datetime, now: datetime) -> tuple[datetime, datetime]:
    if starts_at < now:
        raise invalid("starts_at", "booking.in_past", "不能预约已经过去的时段", "That slot is in the past")
    if starts_at > now + timedelta(days=res.advance_days + 1):
        raise invalid("starts_at", "booking.too_far_ahead", f"最多提前 {res.advance_days} 天预约",
                      f"Bookings open at most {res.advance_days} days ahead")
    local_day = starts_at.astimezone(SHANGHAI).date()
    if (local_day - now.astimezone(SHANGHAI).date()).days > res.advance_days:
        raise invalid("starts_at", "booking.too_far_ahead", f"最多提前 {res.advance_days} 天预约",
                      f"Bookings open at most {res.advance_days} days ahead")
    slot = slot_at(res.opening_hours, res.closed_dates, res.slot_minutes, starts_at)
    if slot is None:
        raise invalid("starts_at", "booking.closed", "该时间不在开放时段内（或不是时段的开始）",
                      "Not the start of a slot within the opening hours")
    return slot[0].astimezone(timezone.utc), slot[1].astimezone(timezone.utc)


async def _serialise(session: AsyncSession, key: str) -> None:
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": "booking:" + key})


async def _check_booker_rules(session: AsyncSession, res: BookableResource, holder, person: str | None,
                              start: datetime, end: datetime, now: datetime, *, exclude: str | None = None) -> None:
    if person is not None:
        block = (await session.execute(select(BookingBlock.until).where(
            BookingBlock.person_id == person, BookingBlock.until > now,
            func.substr(res.place_code, 1, func.length(BookingBlock.place_code)) == BookingBlock.place_code)
            .order_by(BookingBlock.until.desc()).limit(1))).scalar_one_or_none()
        if block is not None:
            until = block.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
            raise Forbidden((f"爽约次数过多，{until} 前不能预约", f"Too many no-shows: no bookings before {until}"),
                            code="booking.blocked", extra={"blocked_until": block.isoformat()})
    others = select(Booking).where(holder, Booking.state.in_(lc.ACTIVE))
    if exclude:
        others = others.where(Booking.id != exclude)
    overlap = (await session.execute(others.where(Booking.starts_at < end, Booking.ends_at > start).limit(1))
               ).scalar_one_or_none()
    if overlap is not None:
        raise invalid("starts_at", "booking.overlaps_own", "与您已有的预约时间重叠",
                      "Overlaps a booking you already hold")
    local = start.astimezone(SHANGHAI)
    monday = datetime.combine(local.date() - timedelta(days=local.weekday()), datetime.min.time(), SHANGHAI)
    week = select(Booking.id).where(holder, Booking.state.in_(lc.ACTIVE + ("completed", "no_show")))
    if exclude:
        week = week.where(Booking.id != exclude)
    count = (await session.execute(select(func.count()).select_from(week.where(
        Booking.resource_id == res.id, Booking.starts_at >= monday,
        Booking.starts_at < monday + timedelta(days=7)).subquery()))).scalar_one()
    if count >= res.weekly_limit:
        raise invalid("starts_at", "booking.weekly_limit", f"每人每周最多预约 {res.weekly_limit} 次",
                      f"At most {res.weekly_limit} bookings a week per person")


async def take_place(session: AsyncSession, res: BookableResource, start: datetime, end: datetime, now: datetime
                     ) -> tuple[str, bool]:
    """(slot id, won): one of the slot's places taken, or none left."""
    await session.execute(_insert(session)(BookingSlot).values(
        id=new_id(), resource_id=res.id, starts_at=start, ends_at=end, capacity=res.capacity, taken=0,
    ).on_conflict_do_nothing(index_elements=["resource_id", "starts_at"]))
    slot_id = (await session.execute(select(BookingSlot.id).where(
        BookingSlot.resource_id == res.id, BookingSlot.starts_at == start))).scalar_one()
    won = (await session.execute(update(BookingSlot).where(BookingSlot.id == slot_id,
                                                           BookingSlot.taken < BookingSlot.capacity)
                                 .values(taken=BookingSlot.taken + 1).returning(BookingSlot.id))).first()
    return slot_id, won is not None


async def release_place(session: AsyncSession, slot_id: str) -> None:
    await session.execute(update(BookingSlot).where(BookingSlot.id == slot_id, BookingSlot.taken > 0)
                          .values(taken=BookingSlot.taken - 1))


def _minutes(b: Booking) -> int:
    return int((b.ends_at - b.starts_at).total_seconds() // 60)


def booking_event(session: AsyncSession, b: Booking, res: BookableResource, name: str, now: datetime, **data) -> None:
    record_event(session, OutboxEvent, f"booking.{name}", subject=b.id,
                 data={"resource_id": res.id, "kind": res.kind, "state": b.state, "minutes": _minutes(b),
                       "starts_at": b.starts_at.isoformat(), "booker_kind": b.booker_kind,
                       "person_id": b.person_id, "request_id": b.request_id, **data},
                 community=b.place_code[:12], grid=b.place_code if len(b.place_code) == 15 else None, now=now)


async def add_entry(session: AsyncSession, b: Booking, action: str, from_state: str | None, actor: Principal | None,
                    now: datetime, note: str | None = None) -> None:
    seq = (await session.execute(select(func.coalesce(func.max(BookingEntry.seq), 0))
                                 .where(BookingEntry.booking_id == b.id))).scalar_one() + 1
    session.add(BookingEntry(booking_id=b.id, seq=seq, action=action, from_state=from_state, to_state=b.state,
                             actor=actor.caller if actor else "system/waitlist", role=actor.role if actor else "system",
                             note=note, starts_at=b.starts_at, at=now))
    if b.request_id is not None:  # a request's appointment: svc_services hears of every step (its feed)
        await appointments.record_change(session, b, now)


async def create_booking(session: AsyncSession, principal: Principal, body: BookingCreate, *, now: datetime,
                         request: appointments.RequestFacts | None = None) -> Booking:
    await write_first(session, body.resource_id)
    res = await resource_for_booking(session, body.resource_id)
    kind, person, org = await _booker(session, principal, res, body)
    start, end = _check_time(res, body.starts_at, now)
    holder, key = _holder(kind, person, org, principal)
    await _serialise(session, key)
    if body.request_id is not None:  # `request`: what svc_services said of it (the router asked, appointments)
        appointments.check_request(request, res, person)
        held = (await session.execute(select(Booking.id).where(Booking.request_id == body.request_id,
                                                               Booking.state.in_(lc.ACTIVE)))).first()
        if held is not None:
            raise Conflict("booking.request_has_appointment", ("该诉求已有预约，请改约", "This request already has an "
                           "appointment; reschedule it"), extra={"booking_id": held[0]})
    await _check_booker_rules(session, res, holder, person, start, end, now)
    slot_id, won = await take_place(session, res, start, end, now)
    if won:
        state = "pending_approval" if res.approval_required else "confirmed"
    elif body.waitlist:
        state = "waitlisted"
    else:
        raise Conflict("booking.slot_full", ("该时段已约满", "That slot is fully booked"),
                       extra={"next_free_slots": await next_free(session, res, start, now)})
    b = Booking(id=new_id(), resource_id=res.id, slot_id=slot_id, place_code=res.place_code, starts_at=start,
                ends_at=end, booker_kind=kind, person_id=person, organization_id=org, request_id=body.request_id,
                booked_by=principal.caller, purpose=body.purpose, state=state, version=1, created_at=now,
                updated_at=now)
    session.add(b)
    await session.flush()
    await add_entry(session, b, "request", None, principal, now)
    booking_event(session, b, res, "requested", now)
    if state == "confirmed":
        booking_notice(session, b, res, "confirmed", now)
    return b


async def record_conflict(db, principal: Principal, body: BookingCreate, now: datetime) -> None:
    """A request refused because its slot was full, counted for the room-conflict indicator (its own
    transaction: the refused booking itself wrote nothing)."""
    async with db.session() as session, session.begin():
        res = await session.get(BookableResource, body.resource_id)
        if res is None:
            return
        record_event(session, OutboxEvent, "booking.conflicted", subject=res.id,
                     data={"resource_id": res.id, "kind": res.kind, "starts_at": body.starts_at.isoformat()},
                     community=res.place_code[:12], grid=res.place_code if len(res.place_code) == 15 else None,
                     now=now)


async def promote_waitlist(session: AsyncSession, res: BookableResource, slot_id: str, now: datetime) -> Booking | None:
    """The longest-waiting booking of the slot gets the freed place (if one is free)."""
    nxt = (await session.execute(select(Booking).where(Booking.slot_id == slot_id, Booking.state == "waitlisted")
                                 .order_by(Booking.created_at, Booking.id).limit(1).with_for_update())
           ).scalar_one_or_none()
    if nxt is None:
        return None
    won = (await session.execute(update(BookingSlot).where(BookingSlot.id == slot_id,
                                                           BookingSlot.taken < BookingSlot.capacity)
                                 .values(taken=BookingSlot.taken + 1).returning(BookingSlot.id))).first()
    if won is None:
        return None
    nxt.state = "pending_approval" if res.approval_required else "confirmed"
    nxt.version += 1
    nxt.updated_at = now
    await add_entry(session, nxt, "promote", "waitlisted", None, now)
    booking_event(session, nxt, res, "promoted", now)
    booking_notice(session, nxt, res, "promoted" if nxt.state == "confirmed" else "promoted_pending", now)
    return nxt


async def _no_show_rule(session: AsyncSession, res: BookableResource, b: Booking, now: datetime) -> None:
    if b.person_id is None:
        return
    since = now - timedelta(days=res.no_show_window_days)
    count = (await session.execute(select(func.count()).where(
        Booking.person_id == b.person_id, Booking.state == "no_show", Booking.updated_at >= since,
        Booking.place_code.startswith(res.place_code[:12])))).scalar_one()
    if count >= res.no_show_limit:
        session.add(BookingBlock(person_id=b.person_id, place_code=res.place_code[:12],
                                 until=now + timedelta(days=res.no_show_block_days), created_at=now,
                                 reason=f"{count} no-shows within {res.no_show_window_days} days"))


async def transition(session: AsyncSession, principal: Principal, booking_id: str, body: TransitionBody, *,
                     now: datetime) -> Booking:
    if session.bind.dialect.name == "sqlite":
        await session.execute(update(Booking).where(Booking.id == booking_id).values(version=Booking.version))
    b = await get_booking(session, principal, booking_id, for_update=True)
    who = ({lc.OWNER} if is_owner(principal, b) else set()) | ({lc.STAFF} if covering_staff(principal, b.place_code)
                                                               else set())
    rule = lc.TRANSITIONS.get((b.state, body.action))
    if rule is None:
        allowed = lc.allowed_actions(b.state, who)
        names = "、".join(lc.ACTION_ZH[a] for a in allowed) or "无"
        raise Conflict("booking.illegal_transition",
                       (f"当前状态（{lc.STATE_ZH[b.state]}）下不能执行“{lc.ACTION_ZH[body.action]}”，可执行：{names}",
                        f"Cannot {body.action} a booking that is {b.state}"), extra={"allowed_actions": allowed})
    if not set(rule.who) & who:
        raise Forbidden((f"无权对该预约执行“{lc.ACTION_ZH[body.action]}”", f"You may not {body.action} this booking"),
                        code="booking.not_allowed")
    check_version(body.version, b.version, "booking.version_conflict",
                  ("该预约已被他人修改，请刷新后重试", "The booking changed; reload and retry"))
    if rule.note_required and not body.note:
        raise invalid("note", "booking.note_required", "请填写原因", "A note is required")
    res = await session.get(BookableResource, b.resource_id)
    before, old_slot, old_start = b.state, b.slot_id, b.starts_at
    if body.action == "reschedule":
        await _reschedule(session, principal, res, b, body, now)
        b.reminded_at = None  # the new time gets its own reminder
    elif body.action == "check_in" and not (b.starts_at - CHECK_IN_EARLY <= now < b.ends_at):
        raise Conflict("booking.check_in_window", ("只能在预约时段内（提前 30 分钟起）签到",
                                                   "Check-in opens 30 minutes before the slot and ends with it"))
    elif body.action == "no_show" and now < b.starts_at:
        raise Conflict("booking.not_started", ("时段尚未开始，不能登记爽约", "The slot has not started yet"))
    else:
        b.state = rule.to
    b.version += 1
    b.updated_at = now
    note = body.note
    if body.action == "reschedule":
        note = f"{old_start.isoformat()} → {b.starts_at.isoformat()}" + (f"：{body.note}" if body.note else "")
    await add_entry(session, b, body.action, before, principal, now, note)
    event = {"approve": "approved", "reject": "rejected", "check_in": "checked_in", "complete": "completed",
             "cancel": "cancelled", "no_show": "no_show", "reschedule": "rescheduled"}[body.action]
    booking_event(session, b, res, event, now, from_state=before)
    # the resident is told of staff's decisions; their own cancel or reschedule they know of
    if event in ("approved", "rejected") or (event in ("cancelled", "rescheduled") and lc.STAFF in who):
        booking_notice(session, b, res, event, now, note=body.note)
    if before in lc.HOLDING and b.state in lc.TERMINAL and b.state != "completed":
        await release_place(session, old_slot)
        await promote_waitlist(session, res, old_slot, now)
    if body.action == "no_show":
        await session.flush()
        await _no_show_rule(session, res, b, now)
    await session.flush()
    return b


async def _reschedule(session: AsyncSession, principal: Principal, res: BookableResource, b: Booking,
                      body: TransitionBody, now: datetime) -> None:
    if body.starts_at is None:
        raise invalid("starts_at", "booking.starts_at_required", "改约须给出新的时段", "Give the new slot's start")
    start, end = _check_time(res, body.starts_at, now)
    holder, key = _holder(b.booker_kind, b.person_id, b.organization_id, principal)
    await _serialise(session, key)
    await _check_booker_rules(session, res, holder, None, start, end, now, exclude=b.id)
    slot_id, won = await take_place(session, res, start, end, now)
    if not won:
        raise Conflict("booking.slot_full", ("该时段已约满", "That slot is fully booked"),
                       extra={"next_free_slots": await next_free(session, res, start, now)})
    old = b.slot_id
    b.slot_id, b.starts_at, b.ends_at = slot_id, start, end
    await release_place(session, old)
    await promote_waitlist(session, res, old, now)


async def timeline(session: AsyncSession, booking_id: str) -> list[BookingEntry]:
    return list((await session.execute(select(BookingEntry).where(BookingEntry.booking_id == booking_id)
                                       .order_by(BookingEntry.seq))).scalars())


def actions_for(principal: Principal, b: Booking) -> list[str]:
    who = ({lc.OWNER} if is_owner(principal, b) else set()) | ({lc.STAFF} if covering_staff(principal, b.place_code)
                                                               else set())
    return lc.allowed_actions(b.state, who)

