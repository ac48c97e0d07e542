"""The person-place feed: svc_residents keeps svc_matching's replica of where each person lives (ADR 0014).

svc_matching's time bank opens accounts only for persons of the register, and shows a person's accounts only to
the person and to staff of where they live; it learns both from this feed rather than asking svc_residents per
call. Every write that registers a person, moves them to another household or takes them off the register (a
merge) calls `send_place` in the same transaction, which writes a `person_place.changed` (or `.removed`) row into
the outbox; a feed relay (common/outbox.py, ADR 0007) delivers it to svc_matching's
`/matching/v1/person_places/{person_id}` with svc_residents' own service token.

What the snapshot holds — data minimisation: `{"grid_code", "community_code", "version"}` (`{"version"}` when
removed), nothing else (no name, ID number, phone, address or household); the outbox row carries no community or
grid. `version` is the person record's own version, which every change of the record bumps under the person's
row lock, so one person's snapshots rise in commit order and svc_matching ignores one not newer than it holds.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.ids import new_id
from svc_residents.base import OutboxEvent
from svc_residents.persons.models import Person

FEED_PREFIX = "person_place."
CHANGED = "person_place.changed"
REMOVED = "person_place.removed"


def outbox_row(person_id: str, version: int, place: tuple[str, str] | None, now: datetime) -> dict[str, Any]:
    """The outbox row (a plain dict, for ORM adds and Core bulk inserts alike); `place` is (grid, community)."""
    data = {"grid_code": place[0], "community_code": place[1], "version": version} if place else {"version": version}
    return dict(event_id=new_id(), type=CHANGED if place else REMOVED, occurred_at=now, community=None, grid=None,
                subject=person_id, data=data, created_at=now, next_attempt_at=now, attempts=0, delivered_at=None,
                last_error=None)


def send_place(session: AsyncSession, person: Person, now: datetime) -> None:
    """Queue the person's current place, or their leaving the register once merged away. Call it after the
    change, with the person's row locked and its version bumped (a registration is version 1)."""
    place = None if person.merged_into else (person.grid_code, person.community_code)
    session.add(OutboxEvent(**outbox_row(person.id, person.version, place, now)))


async def backfill(db, now: datetime, *, batch_size: int = 500) -> int:
    """Send every person's place again (persons registered before the feed existed, or a replica rebuilt from
    scratch). svc_matching ignores a version it already holds, so running it twice changes nothing there."""
    written, after = 0, ""
    while True:
        async with db.session() as session, session.begin():
            persons = list((await session.execute(
                select(Person).where(Person.id > after).order_by(Person.id).limit(batch_size))).scalars())
            if not persons:
                return written
            for person in persons:
                send_place(session, person, now)
            written += len(persons)
        after = persons[-1].id
