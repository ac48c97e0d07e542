"""The delivery scheduler: claims due deliveries, hands them to the channels, records every attempt.

Claimed rows, as svc_services' SLA scheduler claims requests: one transaction selects due rows (`FOR UPDATE SKIP
LOCKED` on PostgreSQL, so a second replica takes other rows) and marks them `sending` with a lease, by a
conditional UPDATE that also keeps two SQLite processes from taking one row. The sends happen outside any
transaction; the results are written in one more, each only if the lease is still ours. A replica that dies
mid-send leaves rows whose lease lapses; they are claimed again, and every platform takes the delivery's `ref`,
so a message it took is not sent again.

A round's SMS and push go to the platforms' batch calls (`Policy.per_call` messages a call, as real gateways take
a list of numbers or device tokens), their receipts are read in batches too; voice calls go one by one. Each
message gets its own attempt and outcome: a batch answer that fails some messages fails those deliveries only.

Per channel: a platform that does not take the message (down, 5xx, unreachable, or that one message failed) is
retried with backoff (`notify_retry_base_seconds` doubling, `notify_max_tries` tries), then the next channel of the
plan is tried; the last one goes on (at most every `max_backoff_seconds`) for a day, so a platform that is down
loses nothing; a voice call nobody answers, or a phone channel without a usable phone, moves to the next channel
at once. A sent SMS or push waits for its receipt (`sent` → `delivered`), asked every `notify_retry_base_seconds`,
for `Policy.receipt_deadline` (10 min) at most: a receipt that says failed ends the attempt `failed` and the
message goes on to its next channel (`_next_channel`, the rule of a send that failed for good); no receipt by the
deadline ends it `unknown` (attempt `unknown`, detail `receipt_expired`) and, unless the person read the message in
the inbox, it goes on to the next channel too (the last channel's delivery ends `unknown`). Nothing is asked after.
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
from common.validators import ValidationFailure, normalize_mobile
from svc_residents.notifications.models import Attempt, Delivery, Notification, StaffContact
from svc_residents.persons.models import Person

log = logging.getLogger("onenet.notifications")
IN_CHUNK = 500
STAFF_AAD = "svc_residents:staff_contacts:{}:phone"
UNAVAILABLE = (SmsUnavailable, PlatformUnavailable)
SMS_SIGN = "【一网通办】"


@dataclass
class Policy:
    base_seconds: float = 5.0
    max_tries: int = 4
    lease_seconds: float = 30.0
    max_backoff_seconds: float = 300.0
    give_up_after: timedelta = timedelta(days=1)  # on the last channel: retried until the message is this old
    batch: int = 1000  # deliveries a round: claimed, loaded and recorded with a few statements
    # SMS or push messages (or receipts) a batch call: the platforms' most (500), half the calls of 250 a round
    per_call: int = 500
    concurrency: int = 64  # calls in flight to the platforms at once (voice calls, batch calls)
    # a sent SMS or push is asked for its receipt this long after: a round hands new messages over first
    receipt_after_seconds: float = 2.0
    # a platform answers a receipt within this time of the hand-over or never: then the outcome is unknown
    receipt_deadline: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Out:
    """One message for a batch call: whom (alias, phone), what, and the sender's reference."""
    alias: str
    phone: str | None
    title: str
    body: str
    ref: str


def _chunks(values, size: int = IN_CHUNK):
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _shared(values: list[str]) -> str | None:
    return values[0] if values and all(v == values[0] for v in values) else None


class Channels:
    """The three outside channels behind one interface. `send` (one message) answers (provider ref, status);
    `send_many` (SMS, push) answers per message (provider ref, status) or (None, error)."""

    def __init__(self, sms, voice, push) -> None:
        self.sms, self.voice, self.push = sms, voice, push

    async def send(self, channel: str, *, alias: str, phone: str | None, title: str, body: str,
                   ref: str) -> tuple[str, str]:
        if channel == "sms":
            return await self.sms.send(phone, f"{SMS_SIGN}{body}"), "sent"
        if channel == "voice":
            r = await self.voice.call(phone, body, ref=ref)
            return r["id"], "delivered" if r["status"] == "answered" else "no_answer"
        r = await self.push.push(alias, title, body, ref=ref)
        return r["id"], "sent"

    async def send_many(self, channel: str, outs: list[Out]) -> list[tuple[str | None, str]]:
        """One batch call; the batch's one text when every message has the same (a broadcast), else each its own.
        Raises SmsUnavailable / PlatformUnavailable when the platform took none of them."""
        if channel == "sms":
            texts = [f"{SMS_SIGN}{o.body}" for o in outs]
            text = _shared(texts)
            results = await self.sms.send_batch(
                [{"phone": o.phone, "ref": o.ref, **({} if text else {"text": t})} for o, t in zip(outs, texts)],
                text=text)
        else:
            title, text = _shared([o.title for o in outs]), _shared([o.body for o in outs])
            results = await self.push.push_batch(
                [{"alias": o.alias, "ref": o.ref, **({} if title else {"title": o.title}),
                  **({} if text else {"text": o.body})} for o in outs], title=title, text=text)
        by_index = {r["index"]: r for r in results}
        out = []
        for i in range(len(outs)):
            r = by_index.get(i)
            out.append((r["id"], "sent") if r and r.get("id") else (None, (r or {}).get("error") or "not_answered"))
        return out

    async def receipt(self, channel: str, ref: str) -> str | None:
        r = await (self.sms.receipt(ref) if channel == "sms" else self.push.receipt(ref))
        return r.get("status") if r else None

    async def receipts(self, channel: str, refs: list[str]) -> dict[str, str]:
        """The status of each message the platform knows among `refs` (one call)."""
        found = await (self.sms.receipts(refs) if channel == "sms" else self.push.receipts(refs))
        return {r["id"]: r.get("status") for r in found}


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


def _usable(phone: str | None) -> str | None:
    """The phone as the platforms take it, or None: a batch must not fail whole for one bad number."""
    try:
        return normalize_mobile(phone) if phone else None
    except ValidationFailure:
        return None


# what a round reads of each claimed delivery (plain rows, no ORM objects)
_ROW = (Delivery.id, Delivery.notification_id, Delivery.channels, Delivery.position, Delivery.tries,
        Delivery.state, Delivery.lease_until, Delivery.provider_ref, Delivery.created_at, Delivery.sent_at,
        Notification.recipient, Notification.title, Notification.body, Notification.read_at)


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
            for part in _chunks(ids):
                for old, new in ((("queued", "sending"), "sending"), (("sent", "checking"), "checking")):
                    res = await s.execute(update(d).where(d.id.in_(part), d.state.in_(old), due)
                                          .values(state=new, lease_until=lease).returning(d.id))
                    claimed += list(res.scalars())
            return claimed

    async def run_once(self, now: datetime) -> int:
        """One round: claim, send, record. Returns how many deliveries were handled."""
        ids = await self.claim(now)
        if not ids:
            return 0
        async with self.db.session() as s:
            rows = []
            for part in _chunks(ids):
                rows += (await s.execute(select(*_ROW).join(Notification, Notification.id == Delivery.notification_id)
                                         .where(Delivery.id.in_(part)))).all()
            # a receipt's row needs no phone: decrypted only for the messages handed over in this round
            phones = await phones_of(s, (r.recipient for r in rows if r.state != "checking"), self.protection)
        results = await self._hand_over(rows, phones, now)
        await self._record(rows, results, now)
        return len(rows)

    async def _hand_over(self, rows, phones: dict[str, str | None], now: datetime) -> dict[str, tuple]:
        """Every claimed delivery's (values, attempt): receipts and SMS/push in batch calls, voice one by one."""
        results: dict[str, tuple] = {}
        receipts: dict[str, list] = {}
        batches: dict[str, list] = {}
        jobs = []
        for d in rows:
            channel = d.channels[d.position]
            phone = _usable(phones.get(d.recipient))
            if d.state == "checking":  # a sent SMS or push: read its receipt
                receipts.setdefault(channel, []).append(d)
            elif channel in ("sms", "voice") and phone is None:  # removed or unusable since it was decided
                results[d.id] = (self._next_channel(d, now, "no_phone"),
                                 {"channel": channel, "outcome": "skipped", "detail": "no_phone"})
            elif channel == "voice":
                jobs.append(self._call(d, phone, now, results))
            else:
                batches.setdefault(channel, []).append((d, phone))
        for channel, items in batches.items():
            jobs += [self._send_batch(channel, part, now, results) for part in _chunks(items, self.policy.per_call)]
        for channel, ds in receipts.items():
            jobs += [self._read_receipts(channel, part, now, results) for part in _chunks(ds, self.policy.per_call)]
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def guarded(job):
            async with gate:
                await job

        await asyncio.gather(*(guarded(j) for j in jobs))
        return results

    async def _record(self, rows, results: dict[str, tuple], now: datetime) -> None:
        """The results in a few statements: one UPDATE (executemany) per shape of change, each row only if the
        lease is still ours, and the attempts in one INSERT (a row without a result keeps its lease, so it lapses
        and is claimed again)."""
        shapes: dict[tuple[str, ...], list[dict]] = {}
        attempts = []
        for d in rows:
            if d.id not in results:
                continue
            values, attempt = results[d.id]
            values = {**values, "lease_until": None, "updated_at": now}
            shapes.setdefault(tuple(sorted(values)), []).append(
                {"w_id": d.id, "w_lease": d.lease_until, **{f"v_{k}": v for k, v in values.items()}})
            if attempt is not None:
                attempts.append({"id": new_id(), "delivery_id": d.id, "notification_id": d.notification_id,
                                 "at": now, "detail": None, "provider_ref": None, **attempt})
        table = Delivery.__table__
        async with self.db.write_gate(), self.db.session() as s, s.begin():
            for keys, params in shapes.items():
                await s.execute(update(table).where(table.c.id == bindparam("w_id"),
                                                    table.c.lease_until == bindparam("w_lease"))
                                .values({k: bindparam(f"v_{k}") for k in keys}), params)
            for part in _chunks(attempts, 200):
                await s.execute(insert(Attempt.__table__), part)

    async def _call(self, d, phone: str, now: datetime, results: dict) -> None:
        try:
            provider_ref, status = await self.channels.send("voice", alias=d.recipient, phone=phone, title=d.title,
                                                            body=d.body, ref=f"{d.id}:{d.position}")
        except UNAVAILABLE as exc:
            results[d.id] = self._not_taken(d, now, "voice", str(exc))
            return
        results[d.id] = self._taken(d, now, "voice", provider_ref, status)

    async def _send_batch(self, channel: str, part: list, now: datetime, results: dict) -> None:
        outs = [Out(d.recipient, phone, d.title, d.body, f"{d.id}:{d.position}") for d, phone in part]
        try:
            answers = await self.channels.send_many(channel, outs)
        except UNAVAILABLE as exc:  # the call failed whole: every message of it is tried again
            for d, _ in part:
                results[d.id] = self._not_taken(d, now, channel, str(exc))
            return
        for (d, _), (provider_ref, status) in zip(part, answers):
            results[d.id] = self._taken(d, now, channel, provider_ref, status) if provider_ref \
                else self._not_taken(d, now, channel, status)

    async def _read_receipts(self, channel: str, part: list, now: datetime, results: dict) -> None:
        try:
            found = await self.channels.receipts(channel, [d.provider_ref for d in part])
        except UNAVAILABLE:
            found = {}
        for d in part:
            results[d.id] = self._receipt_outcome(d, channel, found.get(d.provider_ref), now)

    def _receipt_outcome(self, d, channel: str, status: str | None, now: datetime) -> tuple[dict, dict | None]:
        """A sent message's receipt, final or asked again: delivered; failed (the next channel); none by the deadline
        (unknown: the next channel unless the person read it in the inbox); else asked again before the deadline."""
        attempt = {"channel": channel, "provider_ref": d.provider_ref}
        if status == "delivered":
            return {"state": "delivered"}, {**attempt, "outcome": "delivered"}
        if status == "failed":
            return (self._next_channel(d, now, "receipt_failed"),
                    {**attempt, "outcome": "failed", "detail": "receipt_failed"})
        deadline = (d.sent_at or d.created_at) + self.policy.receipt_deadline
        if now >= deadline:
            values = ({"state": "unknown", "last_error": "receipt_expired"} if d.read_at is not None
                      else self._next_channel(d, now, "receipt_expired", end="unknown"))
            return values, {**attempt, "outcome": "unknown", "detail": "receipt_expired"}
        # no receipt yet (pending, or not known to the platform): ask again, the last time at the deadline
        return {"state": "sent", "next_attempt_at": min(deadline, now + timedelta(seconds=self.policy.base_seconds))}, \
            None

    def _taken(self, d, now: datetime, channel: str, provider_ref: str, status: str) -> tuple[dict, dict]:
        if status == "no_answer":
            return self._next_channel(d, now, "no_answer"), {"channel": channel, "outcome": "failed",
                                                             "detail": "no_answer", "provider_ref": provider_ref}
        state = "delivered" if status == "delivered" else "sent"
        receipt_at = now + timedelta(seconds=self.policy.receipt_after_seconds)
        return ({"state": state, "provider_ref": provider_ref, "tries": d.tries + 1, "next_attempt_at": receipt_at,
                 "last_error": None, "sent_at": now},
                {"channel": channel, "outcome": state, "provider_ref": provider_ref})

    def _not_taken(self, d, now: datetime, channel: str, error: str) -> tuple[dict, dict]:
        return self._failed(d, now, error), {"channel": channel, "outcome": "failed", "detail": error[:300]}

    def _failed(self, d, now: datetime, error: str) -> dict:
        tries = d.tries + 1
        last = d.position + 1 >= len(d.channels)
        # the last channel is not given up while the platform may come back: the message waits, not lost
        if tries < self.policy.max_tries or (last and now - d.created_at < self.policy.give_up_after):
            delay = min(self.policy.max_backoff_seconds, self.policy.base_seconds * 2 ** (tries - 1))
            return {"state": "queued", "tries": tries, "next_attempt_at": now + timedelta(seconds=delay),
                    "last_error": error[:300]}
        return self._next_channel(d, now, error)

    def _next_channel(self, d, now: datetime, error: str, end: str = "failed") -> dict:
        """On to the plan's next channel at once, or the delivery ends in `end` after the last."""
        if d.position + 1 < len(d.channels):
            return {"state": "queued", "position": d.position + 1, "tries": 0, "next_attempt_at": now,
                    "last_error": error[:300]}
        return {"state": end, "last_error": error[:300]}
