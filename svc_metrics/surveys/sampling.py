"""Who a survey reaches: the frame of residents in its scope, a reproducible sample, and the strata tokens carry.

The frame comes from what svc_metrics already learns about persons: svc_residents' `person.registered` (grid,
community, age band) and `person.tagged` (special groups) events in the event store (the same feed the resident
indicators count; ADR 0013: nothing is asked of svc_residents outside its events). A sample is drawn with
`random.Random(seed)` over persons sorted by id, so the same seed over the same frame gives the same sample.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_metrics.events.models import StoredEvent


@dataclass(frozen=True)
class Person:
    id: str
    grid: str
    community: str
    age_band: str
    groups: tuple[str, ...]


async def frame(session: AsyncSession, scope: str) -> list[Person]:
    """Residents registered in the scope (their latest registration), with their current special-group tags."""
    rows = (await session.execute(
        select(StoredEvent.subject, StoredEvent.grid, StoredEvent.community, StoredEvent.data, StoredEvent.occurred_at)
        .where(StoredEvent.type == "person.registered", StoredEvent.grid.startswith(scope))
        .order_by(StoredEvent.occurred_at))).all()
    latest = {r.subject: r for r in rows if r.subject}
    tags: dict[str, set[str]] = defaultdict(set)
    if latest:
        tagged = (await session.execute(
            select(StoredEvent.subject, StoredEvent.data).where(StoredEvent.type == "person.tagged",
                                                                StoredEvent.grid.startswith(scope))
            .order_by(StoredEvent.occurred_at))).all()
        for subject, data in tagged:
            code = str((data or {}).get("code") or "")
            if code:
                (tags[subject].discard if (data or {}).get("removed") else tags[subject].add)(code)
    return [Person(pid, r.grid, r.community or r.grid[:12], str((r.data or {}).get("age_band") or ""),
                   tuple(sorted(tags.get(pid, ()))))
            for pid, r in sorted(latest.items())]


def draw(people: list[Person], mode: str, size: int | None, seed: int) -> list[Person]:
    """all | random (a simple random sample of `size`) | stratified (by grid and age band, allocated in
    proportion with largest remainders, a random sample within each stratum)."""
    if mode == "all" or size is None or size >= len(people):
        return list(people)
    rng = random.Random(seed)
    if mode == "random":
        return sorted(rng.sample(people, size), key=lambda p: p.id)
    strata: dict[tuple[str, str], list[Person]] = defaultdict(list)
    for p in people:
        strata[(p.grid, p.age_band)].append(p)
    keys = sorted(strata)
    quotas = {k: size * len(strata[k]) / len(people) for k in keys}
    alloc = {k: int(quotas[k]) for k in keys}
    for k in sorted(keys, key=lambda k: (-(quotas[k] - alloc[k]), k))[: size - sum(alloc.values())]:
        alloc[k] += 1
    chosen = [p for k in keys for p in rng.sample(strata[k], alloc[k])]
    return sorted(chosen, key=lambda p: p.id)


def strata(people: list[Person], min_group: int) -> dict[str, tuple[str, str, str]]:
    """Per person the (place, age band, groups) their token carries: as fine as at least `min_group` invitees
    share, else coarser (grid → community → the survey's whole sample), so a response's attributes never single
    out fewer than `min_group` invited people."""
    def full(p: Person) -> tuple[str, str, str]:
        return (p.grid, p.age_band, "," + ",".join(p.groups) + "," if p.groups else "")

    levels = [full, lambda p: (p.grid, p.age_band, ""), lambda p: (p.grid, "", ""),
              lambda p: (p.community, "", ""), lambda p: (p.community[:9], "", "")]
    counts = [Counter(f(p) for p in people) for f in levels]
    out = {}
    for p in people:
        out[p.id] = next((f(p) for f, c in zip(levels, counts) if c[f(p)] >= min_group), ("", "", ""))
    return out
