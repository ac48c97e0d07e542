"""Requester facts for request events: age and special groups at submission, from the local profile replica.

Why a replica and not a call: the submission path must not wait on svc_residents (its latency and outages would
become intake's, and every submission would be a personal-data read to log). A government platform keeps the
record of truth in one place (svc_residents) and gives other services only the fields their purpose needs, pushed
to them when they change; here that is the birth date and the group tags, nothing that identifies the person.
The event then carries `requester_id` (the platform's opaque person id, already on the request), `requester_age`
(whole years on the submission day, Asia/Shanghai) and `groups` (tag codes valid that day) — never a name, an ID
number or a phone (DESIGN.md, data protection).

Intake reads the replica through `ProfileCache`: one process-wide bounded cache per database, entries (absent ones
too) kept for `TTL_SECONDS`, so a burst of submissions does one primary-key read per person per minute at most
and none while the entry is fresh. The feed endpoint drops the entry it changes in its own process; other
replicas see a change within the TTL.
"""
from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import SHANGHAI, age_on
from common.db import Database
from common import replica
from svc_services.requesters.models import RequesterProfile

TTL_SECONDS = 60.0
MAX_ENTRIES = 50_000


def requester_facts(person_id: str | None, profile: RequesterProfile | None, at: datetime) -> dict[str, Any]:
    """The fields a request event carries about its requester (nothing when the request is for no person)."""
    if not person_id:
        return {}
    out: dict[str, Any] = {"requester_id": person_id}
    if profile is None or profile.removed:  # a tombstone (person left the register) reads as no profile
        return out
    day = at.astimezone(SHANGHAI).date()
    if profile.birth_date is not None:
        out["requester_age"] = age_on(profile.birth_date, day)
    groups = sorted({g["code"] for g in profile.groups or []
                     if not g.get("valid_until") or date.fromisoformat(str(g["valid_until"])) >= day})
    if groups:
        out["groups"] = groups
    return out


class ProfileCache:
    def __init__(self, db: Database, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.db = db
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[RequesterProfile | None, float]] = OrderedDict()

    async def get(self, person_id: str) -> RequesterProfile | None:
        hit = self._entries.get(person_id)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        async with self.db.session() as session:
            profile = await session.get(RequesterProfile, person_id)
            if profile is not None:
                session.expunge(profile)
        self._entries[person_id] = (profile, time.monotonic() + self.ttl)
        self._entries.move_to_end(person_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return profile

    def forget(self, person_id: str) -> None:
        self._entries.pop(person_id, None)


_CACHES: weakref.WeakKeyDictionary[Database, ProfileCache] = weakref.WeakKeyDictionary()


def profile_cache(db: Database) -> ProfileCache:
    cache = _CACHES.get(db)
    if cache is None:
        cache = _CACHES[db] = ProfileCache(db)
    return cache


async def upsert_profile(session: AsyncSession, person_id: str, birth_date: date | None, groups: list[dict],
                         now: datetime, *, version: int | None = None) -> RequesterProfile:
    """Replace the profile, unless `version` is stale (then the stored one is returned unchanged)."""
    return await replica.upsert(session, RequesterProfile, person_id, {"birth_date": birth_date, "groups": groups},
                                now, version=version)


async def remove_profile(session: AsyncSession, person_id: str, now: datetime, *, version: int | None = None) -> None:
    """Drop the profile: a tombstone with the feed's version, or (ops) no row."""
    await replica.remove(session, RequesterProfile, person_id, {"birth_date": None, "groups": []}, now,
                         version=version)
