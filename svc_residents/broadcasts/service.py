"""Broadcasts: who may send to which place, the audience, the claimed fan-out, the delivery report."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import Clock
from common.db import Database
from common.errors import Forbidden, NotFound, invalid
from common.ids import new_id
from common.lookup import get_or_404
from svc_residents.broadcasts.models import Broadcast
from svc_residents.broadcasts.schemas import BroadcastCreate, BroadcastReport, ChannelReport
from svc_residents.households.models import Household
from svc_residents.notifications.models import Attempt, Notification
from svc_residents.notifications.service import Message, notify_many
from svc_residents.persons.models import Person, PersonTag
from svc_residents.places.models import Place

SENDERS = ("grid_worker", "community_staff", "street_staff")
LEVELS = ("grid", "building", "community")
CHUNK = 1000  # persons per transaction (a few bulk statements): the SQLite write lock is held for one chunk
NOT_FOUND = NotFound("broadcast.not_found", ("通知不存在或无权查看", "Broadcast not found"))


def _may_send(principal: Principal, place_code: str) -> bool:
    return principal.role in SENDERS and principal.covers_place(place_code)


def may_see(principal: Principal, b: Broadcast) -> bool:
    return principal.role == "ops" or _may_send(principal, b.place_code)


async def create(session: AsyncSession, principal: Principal, body: BroadcastCreate, *, now: datetime) -> Broadcast:
    """Checked and stored; nothing is sent in the request (the scheduler fans it out)."""
    if principal.role not in SENDERS:
        raise Forbidden(("只有网格员、社区或街道工作人员可以发布通知", "Only place staff send broadcasts"))
    place = await session.get(Place, body.place_code)
    if place is None or place.level not in LEVELS:
        raise invalid("place_code", "broadcast.place_unknown", "请指定网格、楼栋或社区", "Give a grid, building or community")
    if not _may_send(principal, place.code):
        raise Forbidden(("只能向本辖区发布通知", "You may only send to places in your scope"),
                        code="broadcast.outside_scope")
    b = Broadcast(id=new_id(), title=body.title.strip(), text=body.text.strip(), place_code=place.code,
                  place_level=place.level, group_code=body.group, sender=principal.caller,
                  sender_role=principal.role, state="queued", created_at=now)
    b.audience = (await session.execute(select(func.count()).select_from(audience(b).subquery()))).scalar_one()
    session.add(b)
    await session.flush()
    return b


def audience(b: Broadcast):
    """The persons a broadcast is for, by id (the fan-out's order)."""
    stmt = select(Person.id).where(Person.merged_into.is_(None))
    if b.place_level == "grid":
        stmt = stmt.where(Person.grid_code == b.place_code)
    elif b.place_level == "community":
        stmt = stmt.where(Person.community_code == b.place_code)
    else:
        stmt = stmt.join(Household, Household.id == Person.household_id).where(Household.building_code == b.place_code)
    if b.group_code:
        stmt = stmt.where(select(PersonTag.person_id).where(PersonTag.person_id == Person.id,
                                                            PersonTag.code == b.group_code).exists())
    return stmt


async def _claim(session: AsyncSession, db: Database, broadcast_id: str) -> Broadcast | None:
    stmt = select(Broadcast).where(Broadcast.id == broadcast_id).execution_options(populate_existing=True)
    if db.dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def send_chunk(db: Database, broadcast_id: str, clock: Clock, chunk: int = CHUNK) -> int:
    """Hand the next `chunk` persons to the notification engine; the cursor moves in the same transaction."""
    async with db.session() as session, session.begin():
        b = await _claim(session, db, broadcast_id)
        if b is None or b.state == "sent":
            return 0
        stmt = audience(b)
        if b.cursor:
            stmt = stmt.where(Person.id > b.cursor)
        ids = list((await session.execute(stmt.order_by(Person.id).limit(chunk))).scalars())
        now = clock.now()
        words = {"title": b.title, "text": b.text}
        await notify_many(session, [Message(f"person:{pid}", "notice.general", words, f"broadcast:{b.id}",
                                            subject=b.id) for pid in ids], now=now, unknown="skip")
        b.handed += len(ids)
        if ids:
            b.cursor, b.state = ids[-1], "sending"
        if len(ids) < chunk:
            b.state, b.sent_at = "sent", now
        return len(ids)


async def run_broadcasts(db: Database, clock: Clock) -> int:
    """Persons handed over in this pass (every queued or unfinished broadcast, chunk by chunk)."""
    async with db.session() as session:
        due = list((await session.execute(select(Broadcast.id).where(Broadcast.state.in_(("queued", "sending")))
                                          .order_by(Broadcast.id).limit(20))).scalars())
    total = 0
    for bid in due:
        while n := await send_chunk(db, bid, clock):
            total += n
    return total


async def get_broadcast(session: AsyncSession, principal: Principal, broadcast_id: str) -> Broadcast:
    return await get_or_404(session, Broadcast, broadcast_id, NOT_FOUND, visible=lambda b: may_see(principal, b))


async def report(session: AsyncSession, b: Broadcast) -> BroadcastReport:
    key = f"broadcast:{b.id}"
    out = BroadcastReport.model_validate(b)
    n = Notification
    out.messages, out.read = (await session.execute(
        select(func.count(), func.count(n.read_at)).where(n.event_key == key))).one()
    out.not_sent_outside = dict((await session.execute(
        select(n.skipped, func.count()).where(n.event_key == key, n.skipped.is_not(None)).group_by(n.skipped))).all())
    # per channel, each delivery counted once at its furthest outcome (delivered > failed > unknown > sent >
    # skipped); unknown: handed over, no receipt by the deadline (notifications/dispatch.py)
    rank = {"skipped": 0, "sent": 1, "unknown": 2, "failed": 3, "delivered": 4}
    best: dict[tuple[str, str], str] = {}
    rows = await session.execute(select(Attempt.delivery_id, Attempt.channel, Attempt.outcome)
                                 .join(n, n.id == Attempt.notification_id).where(n.event_key == key))
    for delivery_id, channel, outcome in rows:
        k = (delivery_id, channel)
        if outcome in rank and rank[outcome] >= rank.get(best.get(k, "skipped"), 0):
            best[k] = outcome
    for (_d, channel), outcome in best.items():
        rep = out.channels.setdefault(channel, ChannelReport())
        setattr(rep, outcome, getattr(rep, outcome) + 1)
    return out
