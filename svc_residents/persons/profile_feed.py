"""The requester-profile feed: svc_residents keeps svc_services' minimal replica of each person current.

svc_services puts the requester's age and special groups on `request.submitted` from a local replica
(`/services/v1/requester_profiles/{person_id}`), so a submission never waits on svc_residents. This module is the
producer side: every write that can change what the replica holds calls `sync_profile` in the same transaction,
which writes a `requester_profile.changed` (or `.removed`) row into the outbox; a feed relay (common/outbox.py,
ADR 0007) delivers it to svc_services with svc_residents' own service token. So the replica follows the record
of truth reliably: the row commits with the change, survives svc_services being down, is retried with backoff,
delivered at least once; and each row is a full snapshot with a per-person `version`, so svc_services applies
it idempotently and ignores an older snapshot arriving after a newer one.

What the snapshot holds — data minimisation: the birth date and the tag codes with their expiry, nothing else
(no name, ID number, phone, address, household or place). The outbox row carries no community or grid either.

- `birth_date`: ISO date.
- `groups`: `[{"code", "valid_until"}]`, every tag the person has, sorted by code; `valid_until` is the last day
  (Asia/Shanghai) the tag holds, or null. Expired tags are kept: svc_services decides per submission day.
- `version`: 1, 2, … per person, bumped under the person's row lock, so it follows commit order.

`sync_profile` compares a digest of the snapshot with the last one written (`persons.profile_digest`): an edit
that leaves birth date and tags unchanged (phone, channel, a tag's note or verification) writes nothing.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from common.clock import SHANGHAI, Clock
from common.ids import new_id
from svc_residents.base import OutboxEvent
from svc_residents.persons.models import Person, PersonTag

FEED_PREFIX = "requester_profile."
CHANGED = "requester_profile.changed"
REMOVED = "requester_profile.removed"


def last_day(valid_until: datetime | None) -> str | None:
    """The last Shanghai calendar day a tag valid *until* this instant (exclusive) still holds."""
    if valid_until is None:
        return None
    if valid_until.tzinfo is None:
        valid_until = valid_until.replace(tzinfo=timezone.utc)
    return (valid_until - timedelta(microseconds=1)).astimezone(SHANGHAI).date().isoformat()


def snapshot(birth_date: date | None, tags: Iterable[tuple[str, datetime | None]]) -> dict[str, Any]:
    groups = sorted(({"code": code, "valid_until": last_day(until)} for code, until in tags),
                    key=lambda g: g["code"])
    return {"birth_date": birth_date.isoformat() if birth_date else None, "groups": groups}


def digest(snap: dict[str, Any] | None) -> str:
    body = json.dumps(snap if snap is not None else {"removed": True}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def outbox_row(person_id: str, version: int, snap: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The outbox row (a plain dict, for ORM adds and Core bulk inserts alike): no community, grid or name."""
    data = {**snap, "version": version} if snap is not None else {"version": version}
    return dict(event_id=new_id(), type=CHANGED if snap is not None else REMOVED, occurred_at=now, community=None,
                grid=None, subject=person_id, data=data, created_at=now, next_attempt_at=now, attempts=0,
                delivered_at=None, last_error=None)


async def sync_profile(session: AsyncSession, person_id: str, *, now: datetime, removed: bool = False) -> bool:
    """Write the person's current profile snapshot to the outbox if it differs from the last one written.
    Call it after any change to the person's birth date or tags (or with `removed=True` when the person leaves
    the register: merged away, deceased, deleted). Returns whether a row was written."""
    await session.flush()  # the tag rows this transaction changed must be visible to the read below
    # the row lock (NO KEY UPDATE: tag inserts of other transactions hold KEY SHARE on the person, which this
    # does not wait for, so two tag writers cannot deadlock) serialises the feed of one person: the snapshot below
    # sees every committed change, and the version follows commit order
    row = (await session.execute(
        select(Person.birth_date, Person.profile_version, Person.profile_digest, Person.merged_into)
        .where(Person.id == person_id).with_for_update(key_share=True))).one_or_none()
    if row is None:
        return False
    if removed or row.merged_into:
        snap = None
    else:
        tags = (await session.execute(select(PersonTag.code, PersonTag.valid_until)
                                      .where(PersonTag.person_id == person_id))).all()
        snap = snapshot(row.birth_date, [(t.code, t.valid_until) for t in tags])
    new_digest = digest(snap)
    if new_digest == row.profile_digest:
        return False
    version = (row.profile_version or 0) + 1
    await session.execute(update(Person).where(Person.id == person_id)
                          .values(profile_version=version, profile_digest=new_digest)
                          .execution_options(synchronize_session=False))
    session.add(OutboxEvent(**outbox_row(person_id, version, snap, now)))
    # keep a loaded Person in step with the UPDATE above (a later flush must not write the old values back)
    loaded = session.sync_session.identity_map.get(identity_key(Person, person_id))
    if loaded is not None:
        set_committed_value(loaded, "profile_version", version)
        set_committed_value(loaded, "profile_digest", new_digest)
    return True


async def backfill(db, *, batch_size: int = 500, resend: bool = False, clock: Clock | None = None) -> int:
    """Write a snapshot for every person the feed has not sent yet (registered before the feed existed), or with
    `resend` for everyone (a replica rebuilt from scratch). One transaction per batch; safe to run again."""
    now = (clock or Clock()).now()  # read once: the whole run is one moment
    written = 0
    after = ""
    while True:
        async with db.session() as session, session.begin():
            stmt = select(Person.id).where(Person.id > after).order_by(Person.id).limit(batch_size)
            if not resend:
                stmt = stmt.where(Person.profile_digest.is_(None))
            ids = list((await session.execute(stmt)).scalars())
            if not ids:
                return written
            if resend:
                await session.execute(update(Person).where(Person.id.in_(ids)).values(profile_digest=None)
                                      .execution_options(synchronize_session=False))
            for pid in ids:
                written += await sync_profile(session, pid, now=now)
        after = ids[-1]
