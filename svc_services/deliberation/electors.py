"""The electorate replica's consumer: svc_residents' elector feed (svc_residents/persons/elector_feed.py, ADR 0018)
keeps `deliberation_electors` current, one full snapshot per person with a rising `version`.

`PUT …/electors/{person_id}` and `DELETE …?version=` are that feed's delivery: a snapshot not newer than the
stored one changes nothing (retries, a second relay and a late older delivery converge); a removal (merged away,
off the register) leaves a tombstone holding only its version, so a late older snapshot cannot bring the person
back, and the person no longer takes part, proposes, co-signs, votes or counts in an electorate. Ops may write
without a version (a correction, which the next snapshot from the register replaces)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from svc_services.deliberation.models import Elector
from svc_services.deliberation.schemas import ElectorIn


def _stale(row: Elector | None, version: int | None) -> bool:
    return row is not None and row.version is not None and version is not None and version <= row.version


async def apply_snapshot(session: AsyncSession, person_id: str, body: ElectorIn, now: datetime) -> Elector:
    row = await session.get(Elector, person_id, with_for_update=True)
    if _stale(row, body.version):
        return row  # an older snapshot changes nothing
    if row is None:
        row = Elector(person_id=person_id)
        session.add(row)
    for k, v in body.model_dump().items():
        setattr(row, k, v)
    row.removed, row.updated_at = False, now
    return row


async def remove(session: AsyncSession, person_id: str, version: int | None, now: datetime) -> Elector | None:
    """The person leaves the electorate; None when nothing was known of them and no version was given."""
    row = await session.get(Elector, person_id, with_for_update=True)
    if _stale(row, version):
        return row
    if row is None:
        if version is None:
            return None
        # a tombstone: no place, no household (only the version, against a late older snapshot)
        row = Elector(person_id=person_id, building_code="", household_id="", household_head=False)
        session.add(row)
    row.removed, row.household_head, row.version, row.updated_at = True, False, version, now
    return row
