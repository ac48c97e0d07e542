"""The person-place replica (people/models.py `PersonPlace`): which persons exist and where they live.

svc_residents (the record of truth) sends a snapshot `{grid_code, community_code, version}` whenever a person is
registered, moves household or leaves the register (its `person_place.*` feed, ADR 0014); a snapshot whose version
is not newer than the stored one changes nothing, so retries and relays overtaking each other converge. Ops may
write without a version. The time bank asks it whether a person exists and who may see their accounts.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common import replica
from svc_matching.access import is_own, sees_place
from svc_matching.people.models import PersonPlace


async def known_person(session: AsyncSession, person_id: str | None) -> PersonPlace | None:
    """The person's place, or None when svc_residents never named them or they left the register."""
    if not person_id:
        return None
    place = await session.get(PersonPlace, person_id)
    return None if place is None or place.removed else place


def reaches_person(principal: Principal, person_id: str, place: PersonPlace | None) -> bool:
    """The caller may see this person's time-bank records: the person or their proxy, ops, or place staff whose
    scopes cover where the person lives."""
    return is_own(principal, person_id) or (place is not None and sees_place(principal, place.grid_code))


async def upsert_place(session: AsyncSession, person_id: str, grid_code: str, community_code: str, now: datetime,
                       *, version: int | None = None) -> PersonPlace:
    """Replace the person's place, unless `version` is stale (then the stored row is returned unchanged)."""
    return await replica.upsert(session, PersonPlace, person_id,
                                {"grid_code": grid_code, "community_code": community_code}, now, version=version)


async def remove_place(session: AsyncSession, person_id: str, now: datetime, *, version: int | None = None) -> None:
    """The person left the register: a tombstone with the feed's version, or (ops) no row."""
    await replica.remove(session, PersonPlace, person_id, {"grid_code": None, "community_code": None}, now,
                         version=version)
