"""The delivery scheduler: claims due deliveries, hands them to the channels, records every attempt.

Claimed rows, as svc_services' SLA scheduler claims requests: one transaction selects due rows (`FOR UPDATE SKIP
LOCKED` on PostgreSQL, so a second replica takes other rows) and marks them `sending` with a lease, by a
conditional UPDATE that also keeps two SQLite processes from taking one row. The sends happen outside any
transaction; the results are written in one more, each only if the lease is still ours. A replica that dies
mid-send leaves rows whose lease lapses; they are claimed again (the platforms take the delivery's `ref`, so
voice and push are not repeated; SMS has no such reference — the one case of at-least-once).

Per channel: a platform that does not take the message (down, 5xx, unreachable) is retried with backoff
(`notify_retry_base_seconds` doubling, `notify_max_tries` tries), then the next channel of the plan is tried; the
last one goes on (at most every `max_backoff_seconds`) for a day, so a platform that is down loses nothing;
a voice call nobody answers moves to the next channel at once. A sent SMS or push waits for its receipt
(`sent` → `delivered`).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, insert, or_, select, update

from common.db import Database
from common.ids import new_id
from common.outbound import PlatformUnavailable
from common.sms import SmsUnavailable
from svc_residents.notifications.models import Attempt, Delivery, Notification, StaffContact
from svc_residents.persons.models import Person

log = logging.getLogger("onenet.notifications")
IN_CHUNK = 500
STAFF_AAD = "svc_residents:staff_contacts:{}:phone"


@dataclass
class Policy:
    base_seconds: float = 5.0
    max_tries: int = 4
    lease_seconds: float = 30.0
    max_backoff_seconds: float = 300.0
    give_up_after: timedelta = timedelta(days=1)  # on the last channel: retried until the message is this old
    batch: int = 500  # deliveries a round: claimed, loaded and recorded with a few statements
    concurrency: int = 64  # sends in flight to the platforms at once
    # a sent SMS or push is asked for its receipt this long after: a round hands new messages over first
    receipt_after_seconds: float = 2.0


def _chunks(values, size: int = IN_CHUNK):
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i:i + size]


class Channels:
    """The three outside channels behind one interface: `send` answers (provider ref, status)."""

    def __init__(self, sms, voice, push) -> None:
        self.sms, self.voice, self.push = sms, voice, push

    async def send(self, channel: str, *, alias: str, phone: str | None, title: str, body: str,
                   ref: str) -> tuple[str, str]:
        if channel == "sms":
            return await self.sms.send(phone, f"【一网通办】{body}"), "sent"
        if channel == "voice":
            r = await self.voice.call(phone, body, ref=ref)
            return r["id"], "delivered" if r["status"] == "answered" else "no_answer"
        r = await self.push.push(alias, title, body, ref=ref)
        return r["id"], "sent"

    async def receipt(self, channel: str, ref: str) -> str | None:
        r = await (self.sms.receipt(ref) if channel == "sms" else self.push.receipt(ref))
        return r.get("status") if r else None


async def phones_of(session, recipients, protection) -> dict[str, str | None]:
    """The recipients' phones, decrypted: two queries a chunk, however many recipients."""
    ids: dict[str, list[str]] = {"person": [], "user": []}
    for r in dict.fromkeys(recipients):
        kind, _, ident = r.partition(":")
        ids.setdefault(kind, []).append(ident)
    out: dict[str, str | None] = {}
    for part in _chunks(ids["person"]):
        for pid, enc in await session.execute(select(Person.id, Person.phone_enc).where(Person.id.in_(part))):
            out[f"person:{pid}"] = protection.cipher.decrypt(enc, aad=f"svc_residents:persons:{pid}:phone") \
                if enc else None
    for part in _chunks(ids["user"]):
        for uid, enc in await session.execute(select(StaffContact.user_id, StaffContact.phone_enc)
                                              .where(StaffContact.user_id.in_(part))):
            out[f"user:{uid}"] = protection.cipher.decrypt(enc, aad=STAFF_AAD.format(uid)) if enc else None
    return out


async def phone_of(session, recipient: str, protection) -> str | None:
    return (await phones_of(session, [recipient], protection)).get(recipient)


class Dispatcher:
    def __init__(self, db: Database, channels: Channels, protection, policy: Policy | None = None) -> None:
        self.db, self.channels, self.protection = db, channels, protection
        self.policy = policy or Policy()

    async def claim(self, now: datetime) -> list[str]:
        d = Delivery
        due = or_(and_(d.state.in_(("queued", "sent")), d.next_attempt_at <= now),
                  and_(d.state.in_(("sending", "checking")), d.lease_until < now))
        lease = now + timedelta(seconds=self.policy.lease_seconds)
        async with self.db.write_gate(), self.db.session() as s, s.begin():
            stmt = select(d.id).where(due).order_by(d.next_attempt_at).limit(self.policy.batch)
            if self.db.dialect == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            ids = list((await s.execute(stmt)).scalars())
            if not ids:
                return []
            # queued/sending → sending, sent/checking → checking: the UPDATE re-checks what the SELECT saw
            claimed = []
            for old, new in ((("queued", "sending"), "sending"), (("sent", "checking"), "checking")):
                res = await s.execute(update(d).where(d.id.in_(ids), d.state.in_(old), due)
                                      .values(state=new, lease_until=lease).returning(d.id))
                claimed += list(res.scalars())
            return claimed

    async def run_once(self, now: datetime) -> int:
        """One round: claim, send, record. Returns how many deliveries were handled."""
        ids = await self.claim(now)
        if not ids:
            return 0
        async with self.db.session() as s:
            rows = (await s.execute(select(Delivery, Notification).join(
                Notification, Notification.id == Delivery.notification_id).where(Delivery.id.in_(ids)))).all()
            phones = await phones_of(s, (n.recipient for _, n in rows), self.protection)
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def one(d: Delivery, n: Notification):
            async with gate:
                return await self._try(d, n, phones.get(n.recipient), now)

        results = await asyncio.gather(*(one(d, n) for d, n in rows))
        # the results in a few statements: one UPDATE (executemany) per shape of change, each row only if the
        # lease is still ours, and the attempts in one INSERT
        shapes: dict[tuple[str, ...], list[dict]] = {}
        attempts = []
        for (d, n), (values, attempt) in zip(rows, results):
            values = {**values, "lease_until": None, "updated_at": now}
            shapes.setdefault(tuple(sorted(values)), []).append(
                {"w_id": d.id, "w_lease": d.lease_until, **{f"v_{k}": v for k, v in values.items()}})
            if attempt is not None:
                attempts.append({"id": new_id(), "delivery_id": d.id, "notification_id": n.id, "at": now,
                                 "detail": None, "provider_ref": None, **attempt})
        table = Delivery.__table__
        async with self.db.write_gate(), self.db.session() as s, s.begin():
            for keys, params in shapes.items():
                await s.execute(update(table).where(table.c.id == bindparam("w_id"),
                                                    table.c.lease_until == bindparam("w_lease"))
                                .values({k: bindparam(f"v_{k}") for k in keys}), params)
            for part in _chunks(attempts, 200):
                await s.execute(insert(Attempt.__table__), part)
        return len(rows)

    async def _try(self, d: Delivery, n: Notification, phone: str | None, now: datetime):
        channel = d.channels[d.position]
        if d.state == "checking":  # a sent SMS or push: read its receipt
            try:
                status = await self.channels.receipt(channel, d.provider_ref)
            except (SmsUnavailable, PlatformUnavailable):
                status = None
            if status == "delivered":
                return {"state": "delivered"}, {"channel": channel, "outcome": "delivered",
                                                "provider_ref": d.provider_ref}
            return self._later(d, now, "sent"), None  # no receipt yet: ask again later
        ref = f"{d.id}:{d.position}"
        try:
            provider_ref, status = await self.channels.send(channel, alias=n.recipient, phone=phone, title=n.title,
                                                            body=n.body, ref=ref)
        except (SmsUnavailable, PlatformUnavailable) as exc:
            return self._failed(d, now, str(exc)), {"channel": channel, "outcome": "failed", "detail": str(exc)[:300]}
        if status == "no_answer":
            return self._next_channel(d, now, "no_answer"), {"channel": channel, "outcome": "failed",
                                                             "detail": "no_answer", "provider_ref": provider_ref}
        state = "delivered" if status == "delivered" else "sent"
        receipt_at = now + timedelta(seconds=self.policy.receipt_after_seconds)
        return ({"state": state, "provider_ref": provider_ref, "tries": d.tries + 1, "next_attempt_at": receipt_at,
                 "last_error": None},
                {"channel": channel, "outcome": state, "provider_ref": provider_ref})

    def _later(self, d: Delivery, now: datetime, state: str) -> dict:
        return {"state": state, "next_attempt_at": now + timedelta(seconds=self.policy.base_seconds)}

    def _failed(self, d: Delivery, now: datetime, error: str) -> dict:
        tries = d.tries + 1
        last = d.position + 1 >= len(d.channels)
        # the last channel is not given up while the platform may come back: the message waits, not lost
        if tries < self.policy.max_tries or (last and now - d.created_at < self.policy.give_up_after):
            delay = min(self.policy.max_backoff_seconds, self.policy.base_seconds * 2 ** (tries - 1))
            return {"state": "queued", "tries": tries, "next_attempt_at": now + timedelta(seconds=delay),
                    "last_error": error[:300]}
        return self._next_channel(d, now, error)

    def _next_channel(self, d: Delivery, now: datetime, error: str) -> dict:
        if d.position + 1 < len(d.channels):
            return {"state": "queued", "position": d.position + 1, "tries": 0, "next_attempt_at": now,
                    "last_error": error[:300]}
        return {"state": "failed", "last_error": error[:300]}
