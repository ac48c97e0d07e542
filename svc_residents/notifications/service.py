"""notify() / notify_many(): messages stored with their deliveries in the caller's transaction (see the package's
docstring for the contract).

One rule path: `notify()` is `notify_many()` with one message. A batch (a broadcast's chunk, an event's
audience) is resolved with a few queries whatever its size: the recipients' settings, contacts (persons and their
tags, staff contacts), the outside messages each already had in 24 h, then the messages inserted in one statement
(ON CONFLICT DO NOTHING: idempotent by event and recipient), their deliveries and skips in one more each. The
per-recipient decisions are `decide()`'s, a pure function of what was loaded; the messages of one batch are decided
in order, so a recipient named twice reaches the cap exactly as two calls one after another would."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from common.bulk_insert import RowsInsert
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
IN_CHUNK = 500  # ids per IN (…) list: well inside SQLite's and asyncpg's parameter limits
# plain rows, no ORM objects: one statement each on SQLite (json_each), executemany on PostgreSQL
_DELIVERIES, _ATTEMPTS = RowsInsert(Delivery.__table__), RowsInsert(Attempt.__table__)


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


@dataclass(frozen=True)
class Message:
    """One message wanted: the arguments of `notify()` but the session and `now`."""
    recipient: str
    template: str
    variables: dict[str, Any]
    event_key: str
    urgency: str = "normal"
    subject: str | None = None
    channels: Sequence[str] | None = None
    parallel: bool = False
    community: str | None = None
    grid: str | None = None


@dataclass
class Stored:
    """What became of one message of a batch: its id, whether it is new, why no outside channel carries it."""
    id: str
    created: bool
    skipped: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outside channels of one new message: `skipped` (opted_out, cap, no_channel) or `plans` (one delivery
    each: the channels in order of fallback), `left_out` (recorded skips: no phone), `due` (after quiet hours)."""
    skipped: str | None
    plans: tuple[tuple[str, ...], ...] = ()
    left_out: tuple[str, ...] = ()
    due: datetime | None = None


def parse_recipient(recipient: str) -> tuple[str, str]:
    kind, _, ident = recipient.partition(":")
    if kind not in ("person", "user") or not ident or len(recipient) > 100:
        raise invalid("recipient", "notification.bad_recipient", "收件人应为 person:<居民ID> 或 user:<账号>",
                      "recipient is person:<id> or user:<username>")
    return kind, ident


def _chunks(values: Iterable, size: int = IN_CHUNK):
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i:i + size]


async def contacts_of(session: AsyncSession, recipients: Iterable[str]) -> dict[str, Contact | None]:
    """How each recipient can be reached; None for a person nobody knows (or merged away). Three queries a chunk."""
    wanted = list(dict.fromkeys(recipients))
    by_kind: dict[str, list[str]] = defaultdict(list)
    for r in wanted:
        kind, ident = parse_recipient(r)
        by_kind[kind].append(ident)
    out: dict[str, Contact | None] = {}
    for ids in _chunks(by_kind["person"]):
        tags: dict[str, set[str]] = defaultdict(set)
        for pid, code in await session.execute(select(PersonTag.person_id, PersonTag.code)
                                                .where(PersonTag.person_id.in_(ids))):
            tags[pid].add(code)
        rows = await session.execute(select(Person.id, Person.merged_into, Person.preferred_channel,
                                            Person.accessibility_needs, Person.phone_enc.is_not(None),
                                            Person.community_code, Person.grid_code).where(Person.id.in_(ids)))
        for pid, merged, preferred, needs, has_phone, community, grid in rows:
            if not merged:
                out[f"person:{pid}"] = Contact(ch.person_plan(preferred, list(needs or []), tags[pid]),
                                               bool(has_phone), community, grid)
    for ids in _chunks(by_kind["user"]):
        staff = {s.user_id: s for s in (await session.execute(
            select(StaffContact).where(StaffContact.user_id.in_(ids)))).scalars()}
        for uid in ids:
            s = staff.get(uid)
            # a gateway account without contact details: inbox and push only
            out[f"user:{uid}"] = Contact(ch.staff_plan(s.preferred_channel), s.phone_enc is not None) \
                if s is not None and s.active else Contact(["push"], False)
    return {r: out.get(r) for r in wanted}


async def contact_of(session: AsyncSession, recipient: str) -> Contact | None:
    """How the recipient can be reached; None for a person nobody knows (or merged away)."""
    return (await contacts_of(session, [recipient]))[recipient]


def check(m: Message) -> None:
    """The message's own arguments (422 naming the field): before anything is read or written."""
    if m.urgency not in URGENCIES:
        raise invalid("urgency", "notification.bad_urgency", "紧急程度应为 normal/urgent/emergency/safety",
                      "urgency is normal, urgent, emergency or safety")
    if not m.event_key or len(m.event_key) > 120:
        raise invalid("event_key", "notification.bad_event_key", "事件键须为 1–120 个字符", "event_key: 1–120 characters")
    if m.channels is not None and (not m.channels or set(m.channels) - set(ch.CHANNELS)):
        raise invalid("channels", "notification.bad_channel", "渠道应为 push/sms/voice", "channels: push, sms, voice")
    parse_recipient(m.recipient)


def decide(m: Message, contact: Contact, opted_out: Sequence[str], sent_today: int, now: datetime) -> Decision:
    """The per-recipient rule: opt-out, daily cap, channel plan (needs, preference, phone), fallback or parallel,
    quiet hours; emergencies and safety messages pass opt-outs, caps and quiet hours."""
    bypass = m.urgency in BYPASS
    if not bypass and TEMPLATES[m.template].category in opted_out:
        return Decision("opted_out")
    if not bypass and sent_today >= DAILY_CAP:
        return Decision("cap")
    plan, left_out = ch.reachable(list(m.channels) if m.channels is not None else contact.plan, contact.has_phone)
    due = now if bypass else (ch.quiet_until(now) or now)
    plans = tuple((c,) for c in plan) if m.parallel else (tuple(plan),)
    return Decision(None if plan else "no_channel", plans if plan else ((),), tuple(left_out), due)


async def _sent_today(session: AsyncSession, recipients: list[str], now: datetime) -> dict[str, int]:
    """Outside-channel deliveries (emergencies not counted) each recipient had in the last 24 hours."""
    counts: dict[str, int] = {}
    for rs in _chunks(recipients):
        counts.update((await session.execute(
            select(Notification.recipient, func.count()).select_from(Notification)
            .join(Delivery, Delivery.notification_id == Notification.id)
            .where(Notification.recipient.in_(rs), Notification.created_at > now - timedelta(days=1),
                   Notification.urgency.not_in(BYPASS), Delivery.state != "skipped")
            .group_by(Notification.recipient))).all())
    return counts


async def _insert_once(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """INSERT … ON CONFLICT (event_key, recipient) DO NOTHING, many rows at once: two replicas handling one event
    store one row. Returns the ids actually inserted."""
    mod = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    table = Notification.__table__
    # one cached statement, executemany of plain dicts (SQLAlchemy sends them as multi-row INSERTs)
    stmt = mod.insert(table).on_conflict_do_nothing(index_elements=["event_key", "recipient"]).returning(table.c.id)
    return set((await session.execute(stmt, rows)).scalars())


async def notify_many(session: AsyncSession, messages: Sequence[Message], *, now: datetime,
                      unknown: str = "raise") -> list[Stored | None]:
    """Store `messages` (in the caller's transaction), idempotent by (event_key, recipient). One answer a
    message, in order: None for an unknown recipient when `unknown="skip"`; with `"raise"` (the default) an unknown
    recipient is a 422 naming `recipient`, as is any bad argument or template variable, and nothing is written."""
    for m in messages:
        check(m)
    prefs = {}
    for rs in _chunks({m.recipient for m in messages}):
        prefs.update({p.recipient: p for p in (await session.execute(
            select(RecipientSettings).where(RecipientSettings.recipient.in_(rs)))).scalars()})
    words, rendered = {}, []
    for m in messages:  # 422 before anything is written; a broadcast's one text rendered once a language
        language = prefs[m.recipient].language if m.recipient in prefs else "zh"
        key = (m.template, tuple(sorted((k, str(v)) for k, v in m.variables.items())), language)
        if key not in words:
            words[key] = (language, *render(m.template, m.variables, language))
        rendered.append(words[key])
    contacts = await contacts_of(session, (m.recipient for m in messages))
    if unknown == "raise" and any(c is None for c in contacts.values()):
        raise invalid("recipient", "notification.unknown_recipient", "没有这个收件人", "Unknown recipient")
    rows, ids = [], []
    for m, (language, title, body) in zip(messages, rendered):
        contact = contacts[m.recipient]
        if contact is None:
            ids.append(None)
            continue
        nid = new_id()
        ids.append(nid)
        rows.append(dict(id=nid, recipient=m.recipient, event_key=m.event_key, category=TEMPLATES[m.template].category,
                         template=m.template, variables=m.variables, urgency=m.urgency, language=language,
                         title=title, body=body, subject=m.subject, community_code=m.community or contact.community,
                         grid_code=m.grid or contact.grid, created_at=now, skipped=None, read_at=None))
    created = await _insert_once(session, rows) if rows else set()
    new = [(m, nid) for m, nid in zip(messages, ids) if nid in created]
    counts = await _sent_today(session, list({m.recipient for m, _ in new if m.urgency not in BYPASS}), now)
    deliveries, attempts, skipped = [], [], defaultdict(list)
    outcome: dict[str, str | None] = {}
    for m, nid in new:
        stream.wake_after_commit(session, m.recipient, dispatch_now=m.urgency in BYPASS)
        p = prefs.get(m.recipient)
        d = decide(m, contacts[m.recipient], (p.opted_out or []) if p else [], counts.get(m.recipient, 0), now)
        outcome[nid] = d.skipped
        if d.skipped:
            skipped[d.skipped].append(nid)
        if d.skipped in ("opted_out", "cap"):
            continue
        first = None
        for plan in d.plans:
            did = new_id()
            first = first or did
            deliveries.append(dict(id=did, notification_id=nid, channels=list(plan), position=0, tries=0,
                                   state="queued" if plan else "skipped", next_attempt_at=d.due, created_at=now,
                                   updated_at=now, last_error=None if plan else "no_channel", lease_until=None,
                                   provider_ref=None))
            if plan and m.urgency not in BYPASS:
                counts[m.recipient] = counts.get(m.recipient, 0) + 1
        for c in d.left_out:  # recorded skips: the channel exists but cannot reach this recipient
            attempts.append(dict(id=new_id(), delivery_id=first, notification_id=nid, channel=c, outcome="skipped",
                                 detail="no_phone", at=now, provider_ref=None))
    conn = await session.connection()
    await _DELIVERIES(conn, deliveries)  # the deliveries before their attempts (the foreign key)
    await _ATTEMPTS(conn, attempts)
    for reason, nids in skipped.items():
        for part in _chunks(nids):
            await session.execute(update(Notification).where(Notification.id.in_(part)).values(skipped=reason)
                                  .execution_options(synchronize_session=False))
    old = {}
    if len(new) < len(rows):  # handled before: answer the first message
        missed = [(m.event_key, m.recipient) for m, nid in zip(messages, ids) if nid is not None and nid not in created]
        for part in _chunks(missed, 200):
            old.update({(k, r): (i, s) for i, k, r, s in await session.execute(
                select(Notification.id, Notification.event_key, Notification.recipient, Notification.skipped)
                .where(tuple_(Notification.event_key, Notification.recipient).in_(part)))})
    out: list[Stored | None] = []
    for m, nid in zip(messages, ids):
        if nid is None:
            out.append(None)
        elif nid in created:
            out.append(Stored(nid, True, outcome[nid]))
        else:
            first_id, first_skipped = old[(m.event_key, m.recipient)]
            out.append(Stored(first_id, False, first_skipped))
    return out


async def notify(session: AsyncSession, *, recipient: str, template: str, variables: dict[str, Any],
                 event_key: str, now: datetime, urgency: str = "normal", subject: str | None = None,
                 channels: Sequence[str] | None = None, parallel: bool = False,
                 community: str | None = None, grid: str | None = None) -> Notified:
    """One message: `notify_many` with one, answered with the stored rows."""
    (stored,) = await notify_many(session, [Message(recipient, template, variables, event_key, urgency, subject,
                                                    channels, parallel, community, grid)], now=now)
    note = (await session.execute(select(Notification).where(Notification.id == stored.id)
                                  .execution_options(populate_existing=True))).scalar_one()
    if not stored.created:
        return Notified(note, False)
    out = list((await session.execute(select(Delivery).where(Delivery.notification_id == stored.id)
                                      .order_by(Delivery.id).execution_options(populate_existing=True))).scalars())
    return Notified(note, True, out)
