"""SQLite ingest as a two-stage pipeline, so the CPU work of one batch overlaps the writes of the one before.

SQLite has one writer, and a batch's work is half Python (validate, derive the observations, add up the rollup
changes) and half SQLite (inserts and upserts, run by aiosqlite's thread). Done one batch at a time the two
halves take turns; here batch n+1 is prepared while batch n is written:

1. prepare (one batch at a time): read the earlier events of the touched entities — from memory for entities
   of batches prepared but not yet committed (`pending`), from the database for the rest (their committed
   state is final: no batch in flight touches them) — derive old and new observations, plan every row;
2. write (one batch at a time, in the order prepared): insert, delete, upsert, commit — the whole transaction
   one job for the writer's thread and its connection (`common.writer_threads.WriterThreads`), each bulk write one
   statement over a JSON array (common.bulk_insert.sqlite_json_insert). The job is queued as soon as the batch is prepared, so the
   writer goes from one transaction to the next without a turn through the event loop. Issued statement by
   statement from the loop, or started only once the loop noticed the previous write had ended, a write would
   wait for as long as the loop is busy preparing the next batch, and the two stages would take turns after all.

A batch prepared on top of other batches' uncommitted state stands or falls with them: if one of those writes
fails (its job ran first on the same thread and says so), the later batch writes nothing and answers 503 (the
relay sends it again) instead of committing observations derived from events that were never stored.

The committed events of recently touched entities, with the observations derived from them, stay in memory
(`recent`, least recently used first out): relays deliver in about the order things happen, so a request's
acceptance, resolution and rating arrive while its submission is still there, and neither the read nor the
derivation of its earlier events is repeated. This relies on what the pipeline already relies on: on SQLite
this process is the only one that adds events (the rebuild rewrites observations, never events).

PostgreSQL keeps the one-transaction path (service.ingest) with per-entity locks, as several replicas may write
there.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from sqlalchemy import event

from common.bulk_insert import json_rows
from common.db import Database
from common.writer_threads import WriterThreads
from common.deps import state
from common.errors import Problem
from svc_metrics.events import service
from svc_metrics.events.registry import Envelope
from svc_metrics.kpis import rollup
from svc_metrics.kpis.observations import Ev, Obs, derive

Entity = tuple[str, str]
WRITER_SWITCH_INTERVAL = 0.0005   # seconds: how long the writer may wait for the GIL between statements


class SqliteIngest:
    CHECKPOINT_PAGES = 65_536   # 256 MiB of log at 4 KiB pages

    def __init__(self, db: Database, *, recent_entities: int = 10_000,
                 pragmas: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.db = db
        # one writer thread (common.writer_threads.WriterThreads): its jobs run first in, first run, so a batch's
        # write sees the outcome of the writes it builds on
        self._writer = db.writer_threads(threads=1, name="metrics-writer")
        self._pragmas = pragmas
        event.listen(self._writer.engine, "connect", self._on_connect)
        self._prepare = asyncio.Lock()
        # entity → its events once the batches in flight commit, and the write that makes them so
        self._pending: dict[Entity, tuple[list[Ev], _Write]] = {}
        # entity → its committed events and their observations (derive's result), for entities touched lately
        self._recent: OrderedDict[Entity, tuple[list[Ev], list[Obs]]] = OrderedDict()
        self._recent_max = recent_entities
        # entity → the observations its events in flight derive (with _pending)
        self._pending_obs: dict[Entity, list[Obs]] = {}

    def _on_connect(self, dbapi_connection, _record=None) -> None:
        """The writer's connection (common.db's writer pragmas are set before this): the app's own pragmas, and a
        write-ahead log checkpointed less often than SQLite's default (every 1,000 pages). A batch dirties a few
        thousand pages (event and entity ids are random, so they land all over their indexes), and with the
        default nearly every COMMIT also copied its pages back into the database file and waited for an fsync.
        Every CHECKPOINT_PAGES, the pages written by several commits are copied once and synced once."""
        if self._pragmas is not None:
            self._pragmas(dbapi_connection)
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={self.CHECKPOINT_PAGES}")

    async def ingest(self, events: list[tuple[Envelope, str, str]], now: datetime) -> dict[str, int]:
        if not events:
            return {"received": 0, "accepted": 0, "duplicates": 0}
        async with self._prepare:
            entities = sorted({(kind, eid) for _, kind, eid in events})
            # Taken before reading: a write may commit (and leave `pending`) while the database answers.
            in_flight = {k: self._pending[k] for k in entities if k in self._pending}
            known: dict[Entity, list[Obs]] = {k: self._pending_obs[k] for k in in_flight}
            before: dict[Entity, list[Ev]] = {}
            for k in entities:
                if k not in in_flight and (hit := self._recent.get(k)) is not None:
                    before[k], known[k] = list(hit[0]), hit[1]
            from_db = [k for k in entities if k not in in_flight and k not in before]
            if from_db:
                async with self.db.session() as session:
                    before.update(await service._load_events(session, from_db))
            builds_on: set[_Write] = set()   # the writes this batch's plan assumes
            for k, (evs, write) in in_flight.items():
                before[k] = list(evs)
                builds_on.add(write)
            stored = {e.event_id for evs in before.values() for e in evs}
            fresh = [t for t in events if t[0].event_id not in stored]
            if len(fresh) < len(events) and builds_on:
                # Some "duplicates" are only in flight: they count as stored once their batches commit.
                if not all([await w.settled for w in builds_on]):
                    raise _retry()
            if not fresh:
                return {"received": len(events), "accepted": 0, "duplicates": len(events)}
            plan = self._plan(fresh, before, known, now)
            # Queued at once, in the order prepared: the writer goes from one batch's transaction to the next
            # without waiting for the event loop (which may be busy preparing the batch after).
            write = _Write(asyncio.get_running_loop())
            write.job = asyncio.ensure_future(self._writer.call(_write, self._writer, plan, len(fresh), write,
                                                                tuple(builds_on)))
            for k, evs in plan.after.items():
                self._pending[k] = (evs, write)
                self._pending_obs[k] = plan.observations[k]
        job = write.job
        try:
            try:
                accepted = await asyncio.shield(job)
            except asyncio.CancelledError:
                await asyncio.wait([job])   # the transaction goes on in its thread: let it end before cleaning up
                raise
            if accepted is None:   # a write it builds on failed or stored something else: nothing written
                raise _retry()
            consistent = accepted == len(fresh) or await self._store_anyway(plan)
            write.settled.set_result(consistent)
            self._remember(plan, consistent)
        except BaseException:
            if not write.settled.done():
                write.settled.set_result(False)
            self._remember(plan, False)
            raise
        finally:
            for k, evs in plan.after.items():
                if k in self._pending and self._pending[k][0] is evs:
                    del self._pending[k]
                    del self._pending_obs[k]
        return {"received": len(events), "accepted": plan.accepted, "duplicates": len(events) - plan.accepted}

    async def close(self) -> None:
        await self._writer.close()

    def _remember(self, plan: "_Plan", committed: bool) -> None:
        """After a write: keep what it committed, or forget what it was to commit (read back next time)."""
        recent = self._recent
        for k in plan.touched:
            if committed:
                recent[k] = (plan.after[k], plan.observations[k])
                recent.move_to_end(k)
            else:
                recent.pop(k, None)
        while len(recent) > self._recent_max:
            recent.popitem(last=False)

    def _plan(self, fresh: list[tuple[Envelope, str, str]], before: dict[Entity, list[Ev]],
              known: dict[Entity, list[Obs]], now: datetime) -> "_Plan":
        event_rows = service.sqlite_event_rows(fresh, now)
        touched = sorted({(kind, eid) for _, kind, eid in fresh})
        after = {k: list(before[k]) for k in touched}
        old = {k: known[k] if k in known else derive(k[0], before[k]) if before[k] else [] for k in touched}
        for env, kind, eid in fresh:
            after[(kind, eid)].append(service.as_ev(env))
        new = {k: derive(k[0], after[k]) for k in touched}
        acc: dict = {}
        remove: list[tuple] = []
        replace, obs_rows = service._plan_observations({k: (old[k], new[k]) for k in touched}, acc, sqlite=True,
                                                       remove=remove)
        return _Plan(event_rows, touched, after, new, replace, remove, obs_rows, rollup.nonzero(acc, ordered=False))

    async def _store_anyway(self, plan: "_Plan") -> bool:
        """Rare: some events of the plan were already stored under another entity, and its transaction was
        rolled back. Store the events anyway and recompute the touched entities from what the database holds;
        False, since the batches planned on top of this one must be redone."""
        async with self.db.session() as session, session.begin():
            conn = await session.connection()
            plan.accepted = (await conn.exec_driver_sql(service.SQLITE_INSERT_EVENTS, (plan.events_json,))).rowcount
            await service.refresh_entities(session, plan.touched)
        return False


class _Write:
    """One batch's write: `ok` is set by the writer's thread once the transaction is over (True: committed as
    planned), `settled` on the event loop once everything about it is final (False: batches planned on top
    of it must be sent again)."""

    __slots__ = ("job", "ok", "settled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.job: asyncio.Future | None = None
        self.ok = False
        self.settled: asyncio.Future[bool] = loop.create_future()


def _write(writer: WriterThreads, plan: "_Plan", expected: int, write: _Write,
           builds_on: tuple[_Write, ...]) -> int | None:
    """The plan's transaction, in the writer's thread. None (nothing written) when a write it builds on did not
    commit as planned: those ran before it on this thread, so their outcome is known. Rolled back (nothing
    written) when the events stored are not the `expected` number. Returns that number."""
    if not all(w.ok for w in builds_on):
        return None
    # the driver's connection, in autocommit mode (common.db sets it so): the transaction is this BEGIN IMMEDIATE
    with writer.engine.connect() as pooled:
        conn = pooled.connection.driver_connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            accepted = conn.execute(service.SQLITE_INSERT_EVENTS, (plan.events_json,)).rowcount
            if accepted != expected:
                conn.execute("ROLLBACK")
                return accepted
            for i in range(0, len(plan.replace), service.CHUNK):
                for kind, ids in service._by_kind(plan.replace[i:i + service.CHUNK]).items():
                    conn.execute(f"DELETE FROM kpi_observations WHERE entity_kind = ? AND entity_id IN "
                                 f"({', '.join('?' * len(ids))})", (kind, *ids))
            if plan.remove_json:
                conn.execute(service.SQLITE_DELETE_OBS, (plan.remove_json,))
            if plan.obs_json:
                conn.execute(service.SQLITE_INSERT_OBS, (plan.obs_json,))
            if plan.rollup_json:
                conn.execute(rollup.SQLITE_UPSERT, (plan.rollup_json,))
            if plan.tops_json:
                conn.execute(rollup.SQLITE_ADD_TOP_PLACES, (plan.tops_json,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    plan.accepted = accepted
    write.ok = True
    return accepted


class _Plan:
    """What one batch writes, the rows already encoded for the writer (common.bulk_insert.json_rows)."""

    __slots__ = ("events_json", "touched", "after", "observations", "replace", "remove_json", "obs_json",
                 "rollup_json", "tops_json", "accepted")

    def __init__(self, event_rows, touched, after, observations, replace, remove, obs_rows, rollup_rows) -> None:
        self.events_json, self.touched, self.after, self.observations = json_rows(event_rows), touched, after, observations
        self.replace = replace
        self.remove_json = json_rows(remove) if remove else None
        self.obs_json = json_rows(obs_rows) if obs_rows else None
        self.rollup_json = json_rows(rollup_rows) if rollup_rows else None
        tops = rollup.top_places(rollup_rows)
        self.tops_json = json_rows([[p] for p in tops]) if tops else None
        self.accepted = len(event_rows)


def _retry() -> Problem:
    return Problem(503, "ingest_retry", ("前一批事件写入失败，本批未接收，请重发",
                                         "An earlier batch this one builds on was not stored; send it again"),
                   headers={"Retry-After": "1"})


# what the ingest endpoint takes (`pipeline: Pipeline`): the app's pipeline on a SQLite file, None otherwise
Pipeline = Annotated[SqliteIngest | None, state("sqlite_ingest")]
