"""SQLite ingest as a two-stage pipeline, so the CPU work of one batch overlaps the writes of the one before.

SQLite has one writer, and a batch's work is half Python (validate, derive the observations, add up the rollup
changes) and half SQLite (inserts and upserts, run by aiosqlite's thread). Done one batch at a time the two
halves take turns; here batch n+1 is prepared while batch n is written:

1. prepare (one batch at a time): read the earlier events of the touched entities — from memory for entities
   of batches prepared but not yet committed (`pending`), from the database for the rest (their committed
   state is final: no batch in flight touches them) — derive old and new observations, plan every row;
2. write (one batch at a time, in the order prepared): insert, delete, upsert, commit.

A batch prepared on top of other batches' uncommitted state stands or falls with them: if one of those writes
fails, the later batch answers 503 (the relay sends it again) instead of committing observations derived from
events that were never stored. PostgreSQL keeps the one-transaction path (service.ingest) with per-entity locks, as
several replicas may write there.
"""
from __future__ import annotations

import asyncio
from datetime import datetime

from common.db import Database, json_rows
from common.errors import Problem
from svc_metrics.events import service
from svc_metrics.events.registry import Envelope
from svc_metrics.kpis import rollup
from svc_metrics.kpis.facts import Ev, derive

Entity = tuple[str, str]


class SqliteIngest:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._prepare = asyncio.Lock()
        self._write = asyncio.Lock()
        # entity → its events once the batches in flight commit, and the write that makes them so
        self._pending: dict[Entity, tuple[list[Ev], asyncio.Future[bool]]] = {}

    async def ingest(self, events: list[tuple[Envelope, str, str]], now: datetime) -> dict[str, int]:
        if not events:
            return {"received": 0, "accepted": 0, "duplicates": 0}
        async with self._prepare:
            entities = sorted({(kind, eid) for _, kind, eid in events})
            # Taken before reading: a write may commit (and leave `pending`) while the database answers.
            in_flight = {k: self._pending[k] for k in entities if k in self._pending}
            from_db = [k for k in entities if k not in in_flight]
            before: dict[Entity, list[Ev]] = {}
            if from_db:
                async with self.db.session() as session:
                    before = await service._load_events(session, from_db)
            builds_on: set[asyncio.Future[bool]] = set()   # the writes this batch's plan assumes
            for k, (evs, write) in in_flight.items():
                before[k] = list(evs)
                builds_on.add(write)
            stored = {e.event_id for evs in before.values() for e in evs}
            fresh = [t for t in events if t[0].event_id not in stored]
            if len(fresh) < len(events) and builds_on:
                # Some "duplicates" are only in flight: they count as stored once their batches commit.
                if not all([await w for w in builds_on]):
                    raise _retry()
            if not fresh:
                return {"received": len(events), "accepted": 0, "duplicates": len(events)}
            plan = self._plan(fresh, before, now)
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            for k, evs in plan.after.items():
                self._pending[k] = (evs, done)
        # Writes run in the order batches were prepared (nothing awaits between the two locks, and asyncio's
        # locks are fair), so every write this one builds on has settled when it gets the lock.
        try:
            async with self._write:
                if not all(w.done() and w.result() for w in builds_on):
                    raise _retry()
                consistent = await self._store(plan, len(fresh))
            done.set_result(consistent)
        except BaseException:
            if not done.done():
                done.set_result(False)
            raise
        finally:
            for k, evs in plan.after.items():
                if k in self._pending and self._pending[k][0] is evs:
                    del self._pending[k]
        return {"received": len(events), "accepted": plan.accepted, "duplicates": len(events) - plan.accepted}

    def _plan(self, fresh: list[tuple[Envelope, str, str]], before: dict[Entity, list[Ev]], now: datetime) -> "_Plan":
        event_rows = service.sqlite_event_rows(fresh, now)
        touched = sorted({(kind, eid) for _, kind, eid in fresh})
        after = {k: list(before[k]) for k in touched}
        old = {k: derive(k[0], before[k]) if before[k] else [] for k in touched}
        for env, kind, eid in fresh:
            after[(kind, eid)].append(service.as_ev(env))
        acc: dict = {}
        replace, obs_rows = service._plan_observations({k: (old[k], derive(k[0], after[k])) for k in touched}, acc,
                                                       sqlite=True)
        return _Plan(event_rows, touched, after, replace, obs_rows, rollup.nonzero(acc))

    async def _store(self, plan: "_Plan", expected: int) -> bool:
        """Write the plan in one transaction; False when what was stored differs from what was planned (an
        event id already stored under another entity), and the batches planned on top of it must be redone."""
        async with self.db.session() as session, session.begin():
            conn = await session.connection()
            plan.accepted = (await conn.exec_driver_sql(service.SQLITE_INSERT_EVENTS,
                                                        (json_rows(plan.event_rows),))).rowcount
            if plan.accepted != expected:
                await service.refresh_entities(session, plan.touched)
                return False
            await service._store_observations(session, plan.replace, plan.obs_rows)
            await rollup.write_rows(session, plan.rollup_rows)
        return True


class _Plan:
    __slots__ = ("event_rows", "touched", "after", "replace", "obs_rows", "rollup_rows", "accepted")

    def __init__(self, event_rows, touched, after, replace, obs_rows, rollup_rows) -> None:
        self.event_rows, self.touched, self.after = event_rows, touched, after
        self.replace, self.obs_rows, self.rollup_rows = replace, obs_rows, rollup_rows
        self.accepted = len(event_rows)


def _retry() -> Problem:
    return Problem(503, "ingest_retry", ("前一批事件写入失败，本批未接收，请重发",
                                         "An earlier batch this one builds on was not stored; send it again"),
                   headers={"Retry-After": "1"})
