"""Fast intake: submissions checked concurrently, written together (group commit).

Profiled, the cost of `POST /services/v1/requests` was not the checks but the writing: per submission an
idempotency pre-read in a session of its own, a second session for the key row, the request, its timeline entry,
its outbox event and the stored response as ORM objects (one flush each), and a commit; on SQLite all of it
serialised behind the process's write gate. Here:

- the checks (`service.prepare`) run outside any transaction, with the item's current version and the grid
  read from process caches: an item version is immutable and a grid is never removed, so a cached one is never
  wrong; whether the cached version is still the item's *current* one (and the item still active) is checked
  again inside the writing transaction, and a submission that finds it changed is redone the slow way;
- the submissions waiting at one moment are written by one writer in ONE transaction: the idempotency keys
  looked up with one query, each table filled with one multi-row INSERT, the responses (with their possible
  duplicates) stored as the idempotency records in the same transaction, one commit. A lone submission is
  written at once (no waiting for company); under load, batches form by themselves. On PostgreSQL a batch of
  grid submissions is all of that in ONE statement, one round trip (`batch_statement`);
- that transaction runs on a writer thread of its own through a blocking driver (`common.db.WriterThreads`):
  through aiosqlite its eight statements crossed to and from the busy event loop some thirty times, and a batch
  of eight took 7–8 ms of wall time under load (4–5 ms on the thread; 2.5 ms alone on an idle machine), and
  since SQLite has one writer, that wall time capped the service.

Nothing about the outcome changes: every submission still commits together with its timeline entry, its outbox
event and its idempotency record; a retried key replays the stored response; a key that comes again while its
first submission is still being written waits for it and replays it. Whenever the batch cannot be written as a
whole (a key taken meanwhile by another replica, a busy database, anything unexpected), its submissions fall
back, each alone, to the slow path (`common.idempotency.run_idempotent` around `service.submit`), which decides
them exactly as before.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import Counter, Histogram
from sqlalchemy import bindparam, func, literal, null, select, union_all
from sqlalchemy.engine import Connection

from common.auth import Principal
from common.clock import Clock
from common.db import Database, EncodedRow, RowsInsert, run_plan_blocking
from common.errors import Problem
from common.idempotency import MAX_KEY_LENGTH, replay
from svc_services.base import IdempotencyRecord, OutboxEvent
from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion
from svc_services.grids.models import ServiceGrid
from svc_services.grids.router import located_grids, nearest_of
from svc_services.requests import service
from svc_services.requests.batch_statement import BatchStatement
from svc_services.requesters.models import RequesterProfile
from svc_services.requesters.service import profile_cache
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.requests.schemas import DuplicateOut, RequestCreate
from svc_services.settings import ServicesSettings

log = logging.getLogger("onenet.svc_services.intake")

MAX_BATCH = 128
# what ops watch of the writer: how big its batches are, how long one takes, how often it gives up on one
BATCH_SIZE = Histogram("onenet_intake_batch_submissions", "Submissions written per intake batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
BATCH_SECONDS = Histogram("onenet_intake_batch_seconds", "Time to write one intake batch (transaction and commit)",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
BATCH_FAILURES = Counter("onenet_intake_batch_failures_total",
                         "Intake batches not written (their submissions redone one by one)")
MAX_BATCHES_PER_TURN = 8
MAX_CACHED_GRIDS = 100_000
MAX_CACHED_DUPLICATES = 20_000
MAX_CACHED_STATEMENTS = 10_000
GRID_CENTRES_TTL = 5.0
FALLBACK = object()
AGAIN = object()  # a batch's outcome for a submission put back in the queue, to be written with the next batch


class CachedLookups(service.Lookups):
    """`service.Lookups` over process caches: item versions (immutable) by code, grids (never removed) by code.
    Misses are read in a short read-only session; grid centres for lat/long are a short-lived snapshot."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.items: dict[str, CatalogueItemVersion] = {}
        self.grids: dict[str, ServiceGrid] = {}
        self._centres: list[ServiceGrid] | None = None
        self._centres_at = 0.0

    async def item(self, code: str) -> CatalogueItemVersion | None:
        hit = self.items.get(code)
        if hit is not None:
            return hit
        async with self.db.session() as session:
            iv = await service.Lookups(session).item(code)
        if iv is not None:
            self.items[code] = iv
        return iv

    def forget_item(self, code: str) -> None:
        self.items.pop(code, None)

    async def requester(self, person_id: str) -> RequesterProfile | None:
        return await profile_cache(self.db).get(person_id)

    async def grid(self, code: str) -> ServiceGrid | None:
        hit = self.grids.get(code)
        if hit is not None:
            return hit
        async with self.db.session() as session:
            grid = await session.get(ServiceGrid, code)
        if grid is not None and len(self.grids) < MAX_CACHED_GRIDS:
            self.grids[code] = grid
        return grid

    async def nearest(self, lat: float, long: float, radius_m: float) -> ServiceGrid | None:
        # every grid centre was read for each lat/long submission; a snapshot is kept for GRID_CENTRES_TTL
        # seconds instead (dropped at once when this process registers or moves a grid; another replica's change
        # is seen within the TTL)
        now = time.monotonic()
        if self._centres is None or now - self._centres_at > GRID_CENTRES_TTL:
            async with self.db.session() as session:
                self._centres = await located_grids(session)
            self._centres_at = now
        return nearest_of(self._centres, lat, long, radius_m)

    def forget_centres(self) -> None:
        self._centres = None


# The batch's statements, built once: a statement object keeps its cache key, so executing it again skips
# building the expression and computing the key (profiled: a few per cent of the writer)
_IR = IdempotencyRecord
# a batch's two lookups in one statement (in `_transaction`): its stored keys, by caller AND key (the
# primary key is (caller, key); a lookup by key alone read the whole table once per batch: on PostgreSQL 5.4
# million rows in 11 s of benchmark), and the current version of its items
_LOOKUPS = union_all(
    select(literal("key").label("kind"), _IR.caller.label("code"), _IR.key, _IR.request_hash,
           _IR.status_code.label("number"), _IR.response_body, null().label("active"))
    .where(_IR.caller.in_(bindparam("callers", expanding=True)), _IR.key.in_(bindparam("keys", expanding=True))),
    select(literal("item"), CatalogueItem.code, null(), null(), CatalogueItem.current_version, null(),
           CatalogueItem.active)
    .where(CatalogueItem.code.in_(bindparam("codes", expanding=True))))
# one INSERT … SELECT over the rows as one JSON parameter per table (on PostgreSQL the three of a submission in
# one statement, one round trip), each row's values converted in one pass
_INSERT_REQUESTS = RowsInsert(ServiceRequest.__table__)
_INSERT_TIMELINE = RowsInsert(TimelineEntry.__table__)
_INSERT_EVENTS = RowsInsert(OutboxEvent.__table__)
_INSERT_STORED = RowsInsert(IdempotencyRecord.__table__)
_ONE_STATEMENT = BatchStatement(_INSERT_REQUESTS, _INSERT_TIMELINE, _INSERT_EVENTS, IdempotencyRecord.__tablename__)


@dataclass(eq=False, slots=True)
class Job:
    prepared: service.Prepared
    principal: Principal
    key: str | None
    fingerprint: str
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]
    answer: str = ""  # the response made on the event loop, its possible duplicates left empty (`_with_duplicates`)
    rows: tuple[EncodedRow, ...] | None = None  # request, timeline entry and event, encoded on the event loop


_NO_DUPLICATES_YET = '"possible_duplicates":[]}'


def _with_duplicates(answer: str, duplicates: list[str]) -> str:
    """The response with its possible duplicates (each already JSON): `possible_duplicates` is RequestOut's last
    field, so the answer ends with it (the same bytes as dumping the whole response with them in)."""
    if not answer.endswith(_NO_DUPLICATES_YET):
        # the batch falls back to the slow path, whose answers are whole dumps
        raise ValueError("RequestOut no longer ends with possible_duplicates")
    return f'{answer[:-2]}{",".join(duplicates)}]}}'


@dataclass(frozen=True, slots=True)
class Stored:
    request_hash: str
    status_code: int
    response_body: str


class IntakeWriter:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.db: Database = app.state.db
        self.settings: ServicesSettings = app.state.settings
        self.lookups = CachedLookups(self.db)
        self._queue: deque[Job] = deque()  # appended on the event loop, taken on the writer threads
        self._taking = threading.Lock()
        # One writer on either backend. SQLite has one writer anyway. On PostgreSQL, where a batch is one round
        # trip, a second writer (writing a batch while the first waited for its commit) took whatever single
        # submission came in meanwhile: smaller batches cost the database more per submission than the overlap
        # saved (measured in alternating runs: 0.140 and 0.145 × the bare endpoint with two, 0.153 and 0.158 × with
        # one; the queue is shared, `max_writers` stays a setting)
        self.max_writers = 1
        self.threads = self.db.writer_threads(threads=self.max_writers, name="svc_services-intake")
        # PostgreSQL: a batch of grid submissions is one statement outside a transaction block (`_in_one_statement`)
        self._one_statement = self.db.dialect == "postgresql"
        self._writers: set[asyncio.Task] = set()
        self.batches = 0  # written batches and submissions (tests and benchmarks look at them)
        self.written = 0
        self.fallbacks = 0
        self._in_flight: dict[tuple[str, str], tuple[asyncio.Future, str]] = {}  # (caller, key): outcome, fingerprint
        # possible duplicates made: (id, state, grid) → created_at and DuplicateOut's JSON
        self._duplicates_made: dict[tuple[str, str, str], tuple[datetime, str]] = {}
        self._as_one_row: dict[Any, Any] = {}  # same-grid statement: the same as one JSON row (SQLite)

    # ------------------------------------------------------------------------------------------ entry point
    async def submit(self, principal: Principal, body: RequestCreate, clock: Clock, key: str | None,
                     fingerprint: str) -> Response | None:
        """The response, or None: the caller takes the slow path (which also reports any problem)."""
        if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
            return None
        done = asyncio.get_running_loop().create_future()  # the job's outcome, once written
        if key is not None:
            # The same key already on its way (a kiosk retrying before its first answer came back) gets that
            # submission's outcome, replayed: the two are never written side by side, where on PostgreSQL two
            # concurrent batches would both pass the key check and the second fail on it, whole.
            k = (principal.caller, key)
            ahead = self._in_flight.get(k)
            if ahead is not None:
                outcome = await asyncio.shield(ahead[0])
                if outcome is FALLBACK:
                    return None
                kind, value = outcome
                return replay(Stored(ahead[1], 201, value) if kind == "created" else value, fingerprint)
            self._in_flight[k] = (done, fingerprint)
            done.add_done_callback(lambda _, k=k: self._in_flight.pop(k, None))
        try:
            prepared = await service.prepare(self.lookups, principal, body, clock, self.settings)
            # the response is made here, on the event loop, not on the writer thread that every batch waits for:
            # all of it but the possible duplicates, which the transaction finds
            out = service.to_out(prepared.req, principal)
            out.possible_duplicates = []
            answer = out.model_dump_json()
            rows = self._encoded(prepared)  # and the rows, so the writer only joins them
        except BaseException as exc:
            done.set_result(FALLBACK)  # whoever waits on this key must not wait for ever
            if key is not None and isinstance(exc, Problem):
                return None  # a retried key must replay what it made before, even if the input is refused now
            raise
        self._queue.append(Job(prepared, principal, key, fingerprint, done, answer, rows))
        if len(self._writers) < self.max_writers:
            task = asyncio.create_task(self._drain(), name="svc_services-intake")
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        outcome = await asyncio.shield(done)  # a client that goes away must not cancel what others wait on
        if outcome is FALLBACK:
            self.fallbacks += 1
            return None
        kind, value = outcome
        if kind == "created":
            headers = {"Idempotency-Replayed": "false"} if key is not None else None
            return Response(value.encode(), status_code=201, media_type="application/json", headers=headers)
        return replay(value, fingerprint)

    def _encoded(self, prepared: service.Prepared) -> tuple[EncodedRow, ...] | None:
        dialect = self.db.dialect
        rows = (_INSERT_REQUESTS.encode(dialect, prepared.req), _INSERT_TIMELINE.encode(dialect, prepared.timeline),
                _INSERT_EVENTS.encode(dialect, prepared.event))
        return None if any(row is None for row in rows) else rows

    # ------------------------------------------------------------------------------------------ the writer
    async def _drain(self) -> None:
        try:
            while self._queue:
                async with self.db.write_gate():  # the service's other SQLite writers wait here, not in the database
                    await self.threads.call(self._write_while_queued, asyncio.get_running_loop())
        finally:
            # leave the set now, not in a done-callback: a submission queued from here on must start a writer
            self._writers.discard(asyncio.current_task())  # type: ignore[arg-type]

    def _write_while_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """On a writer thread: batch after batch while submissions wait, each in its own transaction and answered
        as soon as it commits. The event loop does not come in between two batches (handing each batch over and
        back cost the writer a fifth of its time under load); after MAX_BATCHES_PER_TURN batches the turn ends, so
        the service's other writers waiting at the write gate get the database."""
        for _ in range(MAX_BATCHES_PER_TURN):
            with self._taking:  # the queue is shared by PostgreSQL's two writer threads
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            if not batch:
                return
            started = time.perf_counter()
            try:
                outcomes = self._write(batch)
                BATCH_SECONDS.observe(time.perf_counter() - started)
                BATCH_SIZE.observe(len(batch))
            except Exception as exc:  # noqa: BLE001 - the slow path decides each submission on its own
                BATCH_FAILURES.inc()
                log.warning("intake batch not written; submissions retried one by one",
                            extra={"submissions": len(batch), "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                outcomes = {}
            loop.call_soon_threadsafe(self._settle, batch, outcomes)

    def _write(self, batch: list[Job]) -> dict[Job, Any]:
        """On a writer thread: one batch written, each submission's outcome (missing: the slow path decides).
        PostgreSQL writes a batch of grid submissions as one statement; SQLite, and a batch with a lat/long
        submission (its duplicates by distance are read once its rows are in), in a transaction."""
        if self._one_statement and all(job.prepared.req.lat is None and job.rows is not None
                                       and job.answer.endswith(_NO_DUPLICATES_YET) for job in batch):
            outcomes = self.threads.autocommit(self._in_one_statement, batch)
            if outcomes is not None:
                return outcomes
        return self.threads.transaction(self._transaction, batch)

    @staticmethod
    def _settle(batch: list[Job], outcomes: dict[Job, Any]) -> None:
        for job in batch:
            outcome = outcomes.get(job, FALLBACK)
            if outcome is not AGAIN and not job.future.done():
                job.future.set_result(outcome)

    async def close(self) -> None:
        await self.threads.close()

    def _transaction(self, conn: Connection, batch: list[Job]) -> dict[Job, Any]:
        """On a writer thread, inside BEGIN … COMMIT (`WriterThreads`): SQLite (one writer, the write lock taken
        at BEGIN), and on PostgreSQL a batch with a lat/long submission (its duplicates by distance are read
        after the batch's rows are in)."""
        outcomes: dict[Job, Any] = {}
        todo = self._checked(conn, batch, outcomes)
        if todo:
            RowsInsert.blocking_together(conn, self._rows(todo))
            by_grid = self._grid_duplicates(conn, [j for j in todo if j.prepared.req.lat is None])
            records = self._answer(conn, todo, by_grid, outcomes)
            if records:
                _INSERT_STORED.blocking(conn, records)
        self.batches += 1
        self.written += len(todo)
        return outcomes

    def _in_one_statement(self, conn: Connection, batch: list[Job]) -> dict[Job, Any] | None:
        """On a writer thread, PostgreSQL in autocommit: the batch as `batch_statement`'s ONE statement (its
        checks, its possible duplicates and all its rows, one round trip), or None when its rows cannot be
        written that way (the caller writes it in a transaction instead)."""
        groups = list(self._grid_groups(batch).values())
        queries = [self._group_query(group) for group in groups]
        rows = tuple(list(table) for table in zip(*(job.rows for job in batch)))
        made = _ONE_STATEMENT.statement(conn, tuple(q for q, _ in queries), tuple(table[0].keys for table in rows))
        if made is None:
            return None
        sql, fixed = made
        now = self.app.state.clock.now()  # the idempotency records' stamp
        group_of = {job: g for g, group in enumerate(groups) for job in group}
        own = [{"grp": group_of[job], "id": job.prepared.req["id"], "created_at": job.prepared.req["created_at"]}
               for job in batch]
        # each group's candidates among the batch's own requests: what `_grid_duplicates` adds in Python
        reqs = [job.prepared.req for job in batch]
        candidates = [{"grp": g, "id": req["id"], "state": req["state"], "grid": req["grid"],
                       "created_at": req["created_at"]}
                      for g, group in enumerate(groups)
                      for req in reqs
                      if req["item_code"] == group[0].prepared.req["item_code"]
                      and req["grid"] == group[0].prepared.req["grid"] and req["state"] in service.OPEN
                      and service.can_see(group[0].principal, req)]
        records = [{"caller": job.principal.caller, "key": job.key, "request_hash": job.fingerprint,
                    "prefix": job.answer[:-2], "created_at": now, "request_id": job.prepared.req["id"]}
                   for job in batch if job.key is not None]
        params = BatchStatement.params(
            fixed, [p for _, p in queries],
            keyed=[(job.principal.caller, job.key) for job in batch if job.key is not None],
            items=sorted({(req.item_code, req.item_version) for req in reqs}),
            own=orjson.dumps(own).decode(), own_candidates=orjson.dumps(candidates).decode(), rows=rows,
            records=orjson.dumps(records).decode(),
            window=timedelta(hours=self.settings.duplicate_window_hours), limit=service.MAX_DUPLICATES)
        dups: dict[str, str] = {}
        stored: dict[tuple[str, str], Stored] = {}
        stale: set[str] = set()
        for row in conn.exec_driver_sql(sql, params):
            if row.kind == "dups":
                dups[row.a] = row.body
            elif row.kind == "key":
                stored[(row.a, row.b)] = Stored(row.c, row.n, row.body)
            else:
                stale.add(row.a)
        outcomes: dict[Job, Any] = {}
        if stored or stale:  # nothing was written: replay, redo the slow way, or write with the next batch
            again = []
            for job in batch:
                k = (job.principal.caller, job.key)
                if job.key is not None and k in stored:
                    outcomes[job] = ("replay", stored[k])
                elif job.prepared.req.item_code in stale:
                    self.lookups.forget_item(job.prepared.req.item_code)  # edited or withdrawn since it was cached
                    outcomes[job] = FALLBACK
                else:
                    outcomes[job] = AGAIN
                    again.append(job)
            with self._taking:
                self._queue.extendleft(reversed(again))
            return outcomes
        for job in batch:
            outcomes[job] = ("created", f"{job.answer[:-2]}{dups[job.prepared.req['id']]}]}}")
        self.batches += 1
        self.written += len(batch)
        return outcomes

    def _checked(self, conn: Connection, batch: list[Job], outcomes: dict[Job, Any]) -> list[Job]:
        """The batch's submissions to write: a stored key is replayed (into `outcomes`), a submission whose item
        changed since it was cached falls back (left out of both)."""
        keyed = [job for job in batch if job.key is not None]
        params = {"callers": sorted({job.principal.caller for job in keyed}),
                  "keys": sorted({job.key for job in keyed}),
                  "codes": sorted({job.prepared.req.item_code for job in batch})}
        existing: dict[tuple[str, str], Stored] = {}
        current: dict[str, tuple[int, bool]] = {}
        for row in conn.execute(_LOOKUPS, params):
            if row.kind == "key":
                existing[(row.code, row.key)] = Stored(row.request_hash, row.number, row.response_body)
            else:
                current[row.code] = (row.number, bool(row.active))
        todo: list[Job] = []
        for job in batch:
            k = (job.principal.caller, job.key) if job.key is not None else None
            if k is not None and k in existing:
                outcomes[job] = ("replay", existing[k])
                continue
            req = job.prepared.req
            if current.get(req.item_code) != (req.item_version, True):
                self.lookups.forget_item(req.item_code)  # edited or withdrawn since it was cached
                continue  # FALLBACK
            todo.append(job)
        return todo

    @staticmethod
    def _rows(todo: list[Job]) -> list[tuple[RowsInsert, list]]:
        if all(job.rows is not None for job in todo):
            requests, timeline, events = (list(rows) for rows in zip(*(job.rows for job in todo)))
        else:
            requests, timeline, events = ([job.prepared.req for job in todo], [job.prepared.timeline for job in todo],
                                          [job.prepared.event for job in todo])
        return [(_INSERT_REQUESTS, requests), (_INSERT_TIMELINE, timeline), (_INSERT_EVENTS, events)]

    def _answer(self, conn: Connection, todo: list[Job], by_grid: dict[Job, list[str]],
                outcomes: dict[Job, Any]) -> list[dict[str, Any]]:
        """Each submission's response (into `outcomes`) and the idempotency records to store."""
        now = self.app.state.clock.now()
        records = []
        for job in todo:
            found = by_grid.get(job)
            if found is None:
                found = [d.model_dump_json() for d in run_plan_blocking(
                    conn, service.duplicates_plan(job.principal, job.prepared.req, self.settings))]
            body = _with_duplicates(job.answer, found)
            outcomes[job] = ("created", body)
            if job.key is not None:
                records.append({"caller": job.principal.caller, "key": job.key, "request_hash": job.fingerprint,
                                "status_code": 201, "response_body": body, "created_at": now})
        return records

    @staticmethod
    def _grid_groups(jobs: list[Job]) -> dict[tuple, list[Job]]:
        """Submissions that see the same possible duplicates by grid: one item, one grid, one visibility."""
        groups: dict[tuple, list[Job]] = defaultdict(list)
        for job in jobs:
            req, p = job.prepared.req, job.principal
            groups[(req.item_code, req.grid, p.role, p.scopes, p.person_id)].append(job)
        return groups

    def _group_query(self, group: list[Job]) -> tuple[Any, dict]:
        """The same-grid query of a group: within the duplicates window of each of its submissions."""
        req, window = group[0].prepared.req, timedelta(hours=self.settings.duplicate_window_hours)
        times = [job.prepared.req.created_at for job in group]
        return service.same_grid_query(group[0].principal, req.item_code, req.grid, min(times) - window,
                                       max(times) + window, limit=service.MAX_DUPLICATES + len(group))

    def _grid_duplicates(self, conn: Connection, jobs: list[Job]) -> dict[Job, list[str]]:
        """`service.duplicates_plan` for submissions with a grid only, once the batch's rows are in, one query per
        item, grid and caller's visibility: each sees the newest open requests of its item in its grid, the
        batch's others included."""
        window = timedelta(hours=self.settings.duplicate_window_hours)
        out: dict[Job, list[str]] = {}
        for group in self._grid_groups(jobs).values():
            times = [job.prepared.req.created_at for job in group]
            found = self._same_grid(conn, *self._group_query(group))
            limit = service.MAX_DUPLICATES
            if all(max(times) - window <= at <= min(times) + window for _, at, _ in found):
                # within every submission's window (a batch spans milliseconds): the newest but its own
                for job in group:
                    own = job.prepared.req["id"]
                    out[job] = [json for id_, _, json in found[:limit + 1] if id_ != own][:limit]
                continue
            for job in group:
                own, at_ = job.prepared.req["id"], job.prepared.req["created_at"]
                lo, hi = at_ - window, at_ + window
                out[job] = [json for id_, at, json in found if id_ != own and lo <= at <= hi][:limit]
        return out

    def _same_grid(self, conn: Connection, stmt, params: dict) -> list[tuple[str, datetime, str]]:
        """A `service.same_grid_query`'s rows, newest first, as (id, created_at, DuplicateOut's JSON). On SQLite
        read as ONE row (a JSON array of them): the sqlite3 module lets go of the GIL for every row it steps
        through, and beside the busy event loop each time it took the GIL back cost the writer a wait."""
        if conn.dialect.name != "sqlite":
            return [self._duplicate(o.id, o.state, o.grid, o.created_at) for o in conn.execute(stmt, params)]
        together = self._as_one_row.get(stmt)
        if together is None:
            if len(self._as_one_row) >= MAX_CACHED_STATEMENTS:  # one per visibility, as `service` keeps them
                self._as_one_row.clear()
            sub = stmt.subquery()
            together = self._as_one_row[stmt] = select(func.json_group_array(func.json_array(
                sub.c.id, sub.c.state, sub.c.grid, sub.c.created_at)))
        return self._from_json_rows(conn.execute(together, params).scalar_one())

    def _from_json_rows(self, text: str | None) -> list[tuple[str, datetime, str]]:
        """A same-grid query's rows aggregated as a JSON array of [id, state, grid, created_at], newest first."""
        found = [self._duplicate(id_, state, grid, at) for id_, state, grid, at in orjson.loads(text or "[]")]
        found.sort(key=lambda f: (f[1], f[0]), reverse=True)  # an aggregate's order is not the subquery's, by SQL
        return found

    def _duplicate(self, id_: str, state: str, grid: str, created_at: datetime | str) -> tuple[str, datetime, str]:
        """A possible duplicate by grid, its JSON made once per request and state: the same few newest requests of
        a grid come back in batch after batch (an id's created_at never changes; its state and grid may).
        `created_at` as a datetime or as JSON text."""
        key = (id_, state, grid)
        made = self._duplicates_made.get(key)
        if made is None:
            if len(self._duplicates_made) >= MAX_CACHED_DUPLICATES:
                self._duplicates_made.clear()
            if isinstance(created_at, str):  # SQLite's naive UTC text, or PostgreSQL's JSON with an offset
                created_at = datetime.fromisoformat(created_at)
                created_at = (created_at.replace(tzinfo=timezone.utc) if created_at.tzinfo is None
                              else created_at.astimezone(timezone.utc))
            made = self._duplicates_made[key] = (created_at, DuplicateOut.model_construct(
                id=id_, match="grid", distance_m=None, grid=grid, state=state,
                created_at=created_at).model_dump_json())
        return id_, made[0], made[1]
