"""notify(): one message to one recipient, stored with its deliveries in the caller's transaction (see the
package's docstring for the contract)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import invalid
from common.ids import new_id
from svc_residents.notifications import channels as ch
from svc_residents.notifications import stream
from svc_residents.notifications.models import Attempt, Delivery, Notification, RecipientSettings, StaffContact
from svc_residents.notifications.templates import TEMPLATES, render
from svc_residents.persons.models import Person, PersonTag

URGENCIES = ("normal", "urgent", "emergency", "safety")
# these reach the person whatever the hour, their opt-outs or their cap (a safety message is not marketing)
BYPASS = frozenset({"emergency", "safety"})
DAILY_CAP = 20  # outside-channel messages a recipient gets in 24 hours, emergencies not counted


@dataclass
class Notified:
    notification: Notification
    created: bool  # False: (event_key, recipient) was handled before; nothing new stored or sent
    deliveries: list[Delivery] = field(default_factory=list)


@dataclass
class Contact:
    plan: list[str]
    has_phone: bool
    community: str | None = None
    grid: str | None = None


def parse_recipient(recipient: str) -> tuple[str, str]:
    kind, _, ident = recipient.partition(":")
    if kind not in ("person", "user") or not ident or len(recipient) > 100:
        raise invalid("recipient", "notification.bad_recipient", "收件人应为 person:<居民ID> 或 user:<账号>",
                      "recipient is person:<id> or user:<username>")
    return kind, ident


async def contact_of(session: AsyncSession, recipient: str) -> Contact | None:
    """How the recipient can be reached; None for a person nobody knows (or merged away)."""
    kind, ident = parse_recipient(recipient)
    if kind == "person":
        person = await session.get(Person, ident)
        if person is None or person.merged_into:
            return None
        tags = set((await session.execute(select(PersonTag.code).where(PersonTag.person_id == ident))).scalars())
        return Contact(ch.person_plan(person.preferred_channel, list(person.accessibility_needs or []), tags),
                       person.phone_enc is not None, person.community_code, person.grid_code)
    staff = (await session.execute(select(StaffContact).where(StaffContact.user_id == ident))).scalar_one_or_none()
    if staff is None or not staff.active:
        return Contact(["push"], False)  # a gateway account without contact details: inbox and push only
    return Contact(ch.staff_plan(staff.preferred_channel), staff.phone_enc is not None)


async def _insert_once(session: AsyncSession, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT (event_key, recipient) DO NOTHING: two replicas handling one event store one row."""
    dialect = session.bind.dialect.name
    mod = postgresql if dialect == "postgresql" else sqlite
    stmt = mod.insert(Notification).values(**values).on_conflict_do_nothing(
        index_elements=["event_key", "recipient"])
    return (await session.execute(stmt)).rowcount == 1


async def notify(session: AsyncSession, *, recipient: str, template: str, variables: dict[str, Any],
                 event_key: str, now: datetime, urgency: str = "normal", subject: str | None = None,
                 channels: Sequence[str] | None = None, parallel: bool = False,
                 community: str | None = None, grid: str | None = None) -> Notified:
    if urgency not in URGENCIES:
        raise invalid("urgency", "notification.bad_urgency", "紧急程度应为 normal/urgent/emergency/safety",
                      "urgency is normal, urgent, emergency or safety")
    if not event_key or len(event_key) > 120:
        raise invalid("event_key", "notification.bad_event_key", "事件键须为 1–120 个字符", "event_key: 1–120 characters")
    if channels is not None and (not channels or set(channels) - set(ch.CHANNELS)):
        raise invalid("channels", "notification.bad_channel", "渠道应为 push/sms/voice", "channels: push, sms, voice")
    prefs = await session.get(RecipientSettings, recipient)
    language = prefs.language if prefs else "zh"
    title, body = render(template, variables, language)  # 422 before anything is written
    contact = await contact_of(session, recipient)
    if contact is None:
        raise invalid("recipient", "notification.unknown_recipient", "没有这个收件人", "Unknown recipient")
    category = TEMPLATES[template].category
    nid = new_id()
    created = await _insert_once(session, dict(
        id=nid, recipient=recipient, event_key=event_key, category=category, template=template,
        variables=variables, urgency=urgency, language=language, title=title, body=body, subject=subject,
        community_code=community or contact.community, grid_code=grid or contact.grid, created_at=now))
    if not created:
        old = (await session.execute(select(Notification).where(
            Notification.event_key == event_key, Notification.recipient == recipient))).scalar_one()
        return Notified(old, False)
    note = await session.get(Notification, nid)
    stream.wake_after_commit(session, recipient)
    bypass = urgency in BYPASS
    if not bypass and prefs and category in (prefs.opted_out or []):
        note.skipped = "opted_out"
        return Notified(note, True)
    if not bypass and await _sent_today(session, recipient, now) >= DAILY_CAP:
        note.skipped = "cap"
        return Notified(note, True)
    plan, left_out = ch.reachable(list(channels) if channels is not None else contact.plan, contact.has_phone)
    due = now if bypass else (ch.quiet_until(now) or now)
    plans = [[c] for c in plan] if parallel else [plan]
    out = []
    for p in plans or [[]]:
        d = Delivery(id=new_id(), notification_id=nid, channels=p, position=0, tries=0,
                     state="queued" if p else "skipped", next_attempt_at=due, created_at=now, updated_at=now,
                     last_error=None if p else "no_channel")
        session.add(d)
        out.append(d)
    await session.flush()  # the deliveries before their attempts (no ORM relationship orders them)
    for c in left_out:  # recorded skips: the channel exists but cannot reach this recipient
        session.add(Attempt(id=new_id(), delivery_id=out[0].id, notification_id=nid, channel=c, outcome="skipped",
                            detail="no_phone", at=now))
    if not plan:
        note.skipped = "no_channel"
    await session.flush()
    return Notified(note, True, out)


async def _sent_today(session: AsyncSession, recipient: str, now: datetime) -> int:
    return (await session.execute(
        select(func.count()).select_from(Notification).join(Delivery, Delivery.notification_id == Notification.id)
        .where(Notification.recipient == recipient, Notification.created_at > now - timedelta(days=1),
               Notification.urgency.not_in(BYPASS), Delivery.state != "skipped"))).scalar_one()
