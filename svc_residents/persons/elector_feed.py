"""The elector feed: svc_residents keeps svc_services' deliberation electorate current (ADR 0018).

A vote's eligibility (household head only, one per household, one per adult, within a building, grid or
community) is decided in svc_services from a replica, `deliberation_electors`, never by a call here. Every write
that can change what a person's snapshot holds calls `sync_electors` in the same transaction: a registration
(API and import), a move to another household (an edit, a confirmed registration elsewhere), a household's new
building or head (its members), a merge (the duplicate leaves). A feed relay (common/outbox.py, ADR 0007)
delivers `elector.changed` as `PUT /services/v1/deliberation/electors/{person_id}` and `elector.removed` as
`DELETE …?version=` with svc_services' assertion.

What the snapshot holds — data minimisation, only what eligibility needs:
- `building_code`: the household's building, or its grid when the household has none (scope is by code prefix);
- `household_id` (one ballot per household) and `household_head` (household heads only);
- `birth_date` (adult on the vote's local date, computed there with its clock: no age snapshot that goes stale);
- `version`: 1, 2, … per person, bumped under the person's row lock, so it follows commit order.
No name, ID number, phone, address or tags; the outbox row carries no community or grid.
A snapshot equal to the last one written (`persons.elector_digest`) writes nothing.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from common.clock import Clock
from common.ids import new_id
from svc_residents.base import OutboxEvent
from svc_residents.households.models import Household
from svc_residents.persons.models import Person
from svc_residents.persons.profile_feed import digest

FEED_PREFIX = "elector."
CHANGED = "elector.changed"
REMOVED = "elector.removed"


def snapshot(person_id: str, household_id: str, building_code: str | None, grid_code: str,
             head_person_id: str | None, birth_date) -> dict[str, Any]:
    return {"building_code": building_code or grid_code, "household_id": household_id,
            "household_head": head_person_id == person_id,
            "birth_date": birth_date.isoformat() if birth_date else None}


def outbox_row(person_id: str, version: int, snap: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The outbox row (a plain dict, for ORM adds and Core bulk inserts alike): no community, grid or name."""
    data = {**snap, "version": version} if snap is not None else {"version": version}
    return dict(event_id=new_id(), type=CHANGED if snap is not None else REMOVED, occurred_at=now, community=None,
                grid=None, subject=person_id, data=data, created_at=now, next_attempt_at=now, attempts=0,
                delivered_at=None, last_error=None)


async def sync_electors(session: AsyncSession, person_ids: Iterable[str | None], *, now: datetime,
                        removed: bool = False) -> int:
    """Queue the current elector snapshot of each person whose snapshot changed (with `removed`, or for a merged
    record, their leaving the electorate). Call it after the change, in its transaction. Returns rows written."""
    ids = sorted({p for p in person_ids if p})
    if not ids:
        return 0
    await session.flush()  # the household and person changes of this transaction must be visible to the read
    # the persons' row locks (NO KEY UPDATE, in id order: no deadlock between two writers) serialise each
    # person's feed, so its versions follow commit order
    rows = (await session.execute(
        select(Person.id, Person.household_id, Person.birth_date, Person.merged_into, Person.elector_version,
               Person.elector_digest, Household.building_code, Household.grid_code, Household.head_person_id)
        .join(Household, Household.id == Person.household_id)
        .where(Person.id.in_(ids)).order_by(Person.id).with_for_update(of=Person, key_share=True))).all()
    changes, events = [], []
    for r in rows:
        snap = None if removed or r.merged_into else snapshot(r.id, r.household_id, r.building_code, r.grid_code,
                                                               r.head_person_id, r.birth_date)
        new_digest = digest(snap)
        if new_digest == r.elector_digest:
            continue
        version = (r.elector_version or 0) + 1
        changes.append({"b_id": r.id, "b_version": version, "b_digest": new_digest})
        events.append(outbox_row(r.id, version, snap, now))
    if not changes:
        return 0
    table = Person.__table__
    await session.execute(table.update().where(table.c.id == bindparam("b_id"))
                          .values(elector_version=bindparam("b_version"), elector_digest=bindparam("b_digest")),
                          changes)
    await session.execute(OutboxEvent.__table__.insert(), events)
    for c in changes:  # keep a loaded Person in step (a later flush must not write the old values back)
        loaded = session.sync_session.identity_map.get(identity_key(Person, c["b_id"]))
        if loaded is not None:
            set_committed_value(loaded, "elector_version", c["b_version"])
            set_committed_value(loaded, "elector_digest", c["b_digest"])
    return len(events)


async def members(session: AsyncSession, household_id: str) -> list[str]:
    return list((await session.execute(select(Person.id).where(Person.household_id == household_id,
                                                              Person.merged_into.is_(None)))).scalars())


async def backfill(db, *, batch_size: int = 500, resend: bool = False, clock: Clock | None = None) -> int:
    """Send every person the feed has not sent yet (registered before it existed), or with `resend` everyone
    (a replica rebuilt from scratch: svc_services ignores a version it holds). One transaction per batch."""
    now = (clock or Clock()).now()  # read once: the whole run is one moment
    written, after = 0, ""
    while True:
        async with db.session() as session, session.begin():
            stmt = select(Person.id).where(Person.id > after).order_by(Person.id).limit(batch_size)
            if not resend:
                stmt = stmt.where(Person.elector_digest.is_(None))
            ids = list((await session.execute(stmt)).scalars())
            if not ids:
                return written
            if resend:
                await session.execute(Person.__table__.update().where(Person.__table__.c.id.in_(ids))
                                      .values(elector_digest=None))
            written += await sync_electors(session, ids, now=now)
        after = ids[-1]
