"""Possible duplicates (疑似重复诉求): the ONE place they are found and made.

A possible duplicate of a request is an open request of the same item within `duplicate_window_hours` of it that
the caller may see: within `duplicate_radius_m` when both have a lat/long (nearest first), else in the same grid
(newest first) when the other has no lat/long to compare (a kiosk or counter submission gives a grid only).

The database narrows the candidates through its indexes (the statements below); the rule itself is applied here in
Python to every candidate, the rows read and the requests of a batch being written alike, and only here is a
`DuplicateOut` made. `plan` serves one request (`GET …/duplicates`) or the intake's whole batch (one same-grid
query per item, grid and visibility), on an async session or a writer thread's connection (`common.db`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, select

from common.auth import Principal
from common.db import QueryPlan, run_plan
from common.geo import distance_m
from svc_services.requests.access import can_see, visibility_clause
from svc_services.requests.lifecycle import OPEN
from svc_services.requests.models import ServiceRequest
from svc_services.requests.schemas import DuplicateOut
from svc_services.settings import ServicesSettings

MAX_DUPLICATES = 20
MAX_CACHED_STATEMENTS = 10_000

R = ServiceRequest
# what the rule reads of a candidate: its place, state and time, and what `can_see` needs
_COLUMNS = (R.id, R.item_code, R.lat, R.long, R.state, R.created_at, R.grid, R.person_id, R.assignee_kind,
            R.assignee_id, R.escalation_level, R.department)


def duplicate_out(other: Any, distance: float | None = None) -> DuplicateOut:
    """The one constructor of `DuplicateOut`: what a possible duplicate shows of the other request. (Validating
    costs pydantic-core less than `model_construct`'s Python loop.)"""
    return DuplicateOut(id=other.id, match="grid" if distance is None else "distance",
                        distance_m=None if distance is None else round(distance, 1), grid=other.grid,
                        state=other.state, created_at=other.created_at)


def _candidate(principal: Principal, req: Any, other: Any, window: timedelta) -> bool:
    return (other.id != req.id and other.item_code == req.item_code and other.state in OPEN
            and abs(other.created_at - req.created_at) <= window and can_see(principal, other))


def plan(subjects: list[tuple[Principal, Any]], settings: ServicesSettings,
         batch: list[Any] = ()) -> QueryPlan:
    """Each subject's possible duplicates (a list of `DuplicateOut` per subject, in order). `batch`: requests
    being written with the subjects, not yet in the database, candidates as much as the rows read."""
    window = timedelta(hours=settings.duplicate_window_hours)
    radius = settings.duplicate_radius_m
    near: list[list[tuple[float, Any]]] = []
    for principal, req in subjects:
        found: list[tuple[float, Any]] = []
        if req.lat is not None and req.long is not None:
            dlat = radius / 111_000 * 1.5
            dlon = dlat / max(0.1, math.cos(math.radians(req.lat)))
            rows = yield select(*_COLUMNS).where(
                R.item_code == req.item_code, R.id != req.id, R.state.in_(sorted(OPEN)),
                R.created_at >= req.created_at - window, R.created_at <= req.created_at + window,
                R.lat.between(req.lat - dlat, req.lat + dlat), R.long.between(req.long - dlon, req.long + dlon),
            ).limit(200), None
            for other in [*rows, *batch]:
                if other.lat is not None and other.long is not None and _candidate(principal, req, other, window):
                    d = distance_m(req.lat, req.long, other.lat, other.long)
                    if d <= radius:
                        found.append((d, other))
            found.sort(key=lambda f: f[0])
        near.append(found)
    # by grid: one query per item, grid and visibility, within the window of each of its subjects
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (principal, req) in enumerate(subjects):
        groups[(req.item_code, req.grid, req.lat is not None, principal.role, principal.scopes,
                principal.person_id)].append(i)
    by_grid: dict[int, list[Any]] = {}
    for members in groups.values():
        principal, first = subjects[members[0]]
        times = [subjects[i][1].created_at for i in members]
        rows = yield same_grid_query(principal, first.item_code, first.grid, min(times) - window,
                                     max(times) + window, limit=MAX_DUPLICATES + len(members),
                                     without_location=first.lat is not None)
        # the group's grid and place are its members': the pool is sorted once, and each member takes from it,
        # newest first, the candidates the rule lets it list, up to what it may list
        pool = sorted((o for o in [*rows, *batch] if o.grid == first.grid and (first.lat is None or o.lat is None)),
                      key=lambda o: (o.created_at, o.id), reverse=True)
        for i in members:
            principal, req = subjects[i]
            room = MAX_DUPLICATES - min(len(near[i]), MAX_DUPLICATES)
            taken: list[Any] = []
            for o in pool:
                if len(taken) >= room:
                    break
                if _candidate(principal, req, o, window):
                    taken.append(o)
            by_grid[i] = taken
    # each candidate's DuplicateOut is made once per plan, however many subjects list it
    made_for: dict[tuple[int, float | None], DuplicateOut] = {}

    def made(other: Any, distance: float | None = None) -> DuplicateOut:
        key = (id(other), distance)
        dup = made_for.get(key)
        if dup is None:
            dup = made_for[key] = duplicate_out(other, distance)
        return dup

    out = []
    for i, found in enumerate(near):
        listed = [made(other, d) for d, other in found[:MAX_DUPLICATES]]
        listed += [made(o) for o in by_grid[i]]
        out.append(listed)
    return out


async def find(session, principal: Principal, req: ServiceRequest,
               settings: ServicesSettings) -> list[DuplicateOut]:
    return (await run_plan(session, plan([(principal, req)], settings)))[0]


def same_grid_query(principal: Principal, item_code: str, grid: str, since: datetime, until: datetime, *,
                    limit: int, without_location: bool = False) -> tuple[Any, dict[str, Any]]:
    """Open requests of an item in a grid created in [since, until] that `principal` may see, newest first
    (served by ix_service_requests_item_grid_created_id): the statement and its parameters."""
    params = {"item_code": item_code, "grid": grid, "since": since, "until": until, "limit": limit}
    return same_grid_statement(principal, without_location), params


_SAME_GRID: dict[tuple, Any] = {}


def same_grid_statement(principal: Principal, without_location: bool):
    """The statement for one visibility (role and scopes) with the values as parameters, built once per
    visibility: intake runs it for every batch, and building it (and its cache key) cost more than running it."""
    key = (principal.role, principal.scopes, principal.person_id, without_location)
    stmt = _SAME_GRID.get(key)
    if stmt is not None:
        return stmt
    stmt = (select(*_COLUMNS)
            .where(R.item_code == bindparam("item_code"), R.grid == bindparam("grid"), R.state.in_(sorted(OPEN)),
                   R.created_at >= bindparam("since"), R.created_at <= bindparam("until"))
            .order_by(R.created_at.desc(), R.id.desc()).limit(bindparam("limit", type_=Integer)))
    if without_location:
        stmt = stmt.where(R.lat.is_(None))
    clause = visibility_clause(principal)
    if clause is not None:
        stmt = stmt.where(clause)
    if len(_SAME_GRID) < MAX_CACHED_STATEMENTS:
        _SAME_GRID[key] = stmt
    return stmt
