"""The one writer of submissions: the submissions waiting at one moment are written together (group commit).

A submission is checked on the event loop (`intake.prepare`) and queued; one writer takes what is queued as a batch
(a lone submission is a batch of one; under load batches form by themselves) and writes it on a writer thread
through a blocking driver (`common.writer_threads`, ADR 0011), batch after batch while submissions wait:

1. one statement looks up the batch's stored Idempotency-Keys (`common.idempotency`) and its items' current
   versions, and carries the first read of the batch's possible duplicates (`duplicates.plan`; for a batch of one
   item, grid and caller, its only one): a stored key is replayed; a submission whose cached item version is no
   longer current is checked again (`intake.prepare`, the item read afresh) and queued again;
2. the possible duplicates are made (`duplicates.plan`), the batch's own requests among the candidates (planned
   again for what is written when step 1 took submissions out of the batch);
3. the requests, timeline entries, outbox events (`common.outbox.event_row`) and idempotency records (the answers)
   are inserted: on SQLite inside the one transaction that the lookups opened (BEGIN IMMEDIATE, the write lock
   taken at once); on PostgreSQL as ONE statement in autocommit, atomic by itself.

A key sent again while its first submission is being written waits for it and replays it. A batch that fails as
a whole (a key stored meanwhile by another replica, a busy database) is written again one submission at a time;
a submission that fails alone gets its error.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi.responses import Response
from prometheus_client import Counter, Histogram
from sqlalchemy import bindparam, cast, literal, null, select, union_all
from sqlalchemy.engine import Connection

from common.auth import Principal
from common.clock import Clock
from common.bulk_insert import EncodedRow, RowsInsert
from common.db import Database, run_plan_blocking
from common.deps import state
from common.errors import Problem
from common.idempotency import created, record_values, replay, stored_record
from common.outbox import wake_relays
from svc_services.base import IdempotencyRecord, OutboxEvent
from svc_services.catalogue.models import CatalogueItem
from svc_services.requests import duplicates
from svc_services.requests.intake import IntakeLookups, Prepared, prepare
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.requests.payloads import to_out
from svc_services.requests.schemas import RequestCreate, RequestOut
from svc_services.settings import ServicesSettings

log = logging.getLogger("onenet.svc_services.intake")

MAX_BATCH = 128
MAX_BATCHES_PER_TURN = 8
# what ops watch of the writer: how big its batches are, how long one takes, how often one fails whole
BATCH_SIZE = Histogram("onenet_intake_batch_submissions", "Submissions written per intake batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
BATCH_SECONDS = Histogram("onenet_intake_batch_seconds", "Time to write one intake batch (transaction and commit)",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
BATCH_FAILURES = Counter("onenet_intake_batch_failures_total",
                         "Intake batches not written whole (their submissions written again one by one)")

STALE = object()  # the outcome of a submission whose cached item version is no longer current

_IR = IdempotencyRecord
# a batch's two lookups in one statement: its stored keys, by caller AND key (the primary key), and the
# current version of its items
_LOOKUP_BRANCHES = (
    select(literal("key").label("kind"), _IR.caller.label("code"), _IR.key, _IR.request_hash,
           _IR.status_code.label("number"), _IR.response_body, cast(null(), CatalogueItem.active.type).label("active"))
    .where(_IR.caller.in_(bindparam("callers", expanding=True)), _IR.key.in_(bindparam("keys", expanding=True))),
    select(literal("item"), CatalogueItem.code, cast(null(), _IR.key.type), cast(null(), _IR.request_hash.type),
           CatalogueItem.current_version, cast(null(), _IR.response_body.type), CatalogueItem.active)
    .where(CatalogueItem.code.in_(bindparam("codes", expanding=True))))
_LOOKUPS = union_all(*_LOOKUP_BRANCHES)
_WITH_FIRST_READ: dict[Any, Any] = {}  # lookups + a plan's first (parametrised, so reused) statement, built once


def _lookups_with(read) -> Any:
    """The batch's lookups and `read` (the duplicates plan's first statement) as ONE statement: its rows after the
    lookups' (kind "read"), each branch padded with typed NULLs to the other's columns. PostgreSQL answers both in
    one round trip instead of two."""
    fused = _WITH_FIRST_READ.get(read)
    if fused is not None:
        return fused
    sub = read.subquery()
    pad_read = [cast(null(), c.type).label(c.key) for c in sub.c]
    pad_lookups = [cast(null(), c.type) for c in _LOOKUP_BRANCHES[0].selected_columns[1:]]
    fused = union_all(*(lookup.add_columns(*pad_read) for lookup in _LOOKUP_BRANCHES),
                      select(literal("read"), *pad_lookups, *sub.c))
    if len(_WITH_FIRST_READ) < duplicates.MAX_CACHED_STATEMENTS:
        _WITH_FIRST_READ[read] = fused
    return fused


def _resumed(plan, rows: list[Any]):
    """`plan`, its first statement already run (`rows`), as a plan that goes on from there."""
    try:
        step = plan.send(rows)
        while True:
            step = plan.send((yield step))
    except StopIteration as done:
        return done.value
_INSERT_REQUESTS = RowsInsert(ServiceRequest.__table__)
_INSERT_TIMELINE = RowsInsert(TimelineEntry.__table__)
_INSERT_EVENTS = RowsInsert(OutboxEvent.__table__)
_INSERT_STORED = RowsInsert(IdempotencyRecord.__table__)


@dataclass(frozen=True, slots=True)
class Stored:
    request_hash: str
    status_code: int
    response_body: str


@dataclass(eq=False, slots=True)
class Job:
    prepared: Prepared
    principal: Principal
    key: str | None
    fingerprint: str
    out: RequestOut  # the answer made on the event loop, without its possible duplicates
    rows: tuple  # request, timeline entry, event and the feeds' rows, encoded on the event loop (or as they are)
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]


class IntakeWriter:
    def __init__(self, db: Database, settings: ServicesSettings) -> None:
        self.db = db
        self.settings = settings
        self.lookups = IntakeLookups(db)
        self._queue: deque[Job] = deque()  # appended on the event loop, taken on the writer thread
        self._taking = threading.Lock()
        # One writer thread on either backend: SQLite has one writer anyway; on PostgreSQL a second took whatever
        # single submission came in meanwhile, and smaller batches cost the database more than the overlap saved
        self.threads = db.writer_threads(threads=1, name="svc_services-intake")
        self._autocommit = db.dialect == "postgresql"
        self._writer: asyncio.Task | None = None
        self.batches = 0  # written batches and submissions (tests and benchmarks look at them)
        self.written = 0
        self.failures = 0  # batches not written whole
        self._in_flight: dict[tuple[str, str], tuple[asyncio.Future, str]] = {}  # (caller, key): outcome, fingerprint

    # ------------------------------------------------------------------------------------------ on the loop
    async def submit(self, principal: Principal, body: RequestCreate, clock: Clock, key: str | None,
                     fingerprint: str, *, request_id: str | None = None) -> Response:
        if key is None:
            kind, value = await self._submit(principal, body, clock, None, fingerprint, request_id)
            return created(value, 201, keyed=False)
        k = (principal.caller, key)
        while (ahead := self._in_flight.get(k)) is not None:
            # The same key already on its way (a kiosk retrying before its first answer came back) gets that
            # submission's outcome, replayed: the two are never written side by side
            outcome = await asyncio.shield(ahead[0])
            if outcome is not None:
                kind, value = outcome
                return replay(Stored(ahead[1], 201, value) if kind == "created" else value, fingerprint)
        done = asyncio.get_running_loop().create_future()
        self._in_flight[k] = (done, fingerprint)
        try:
            outcome = await self._submit(principal, body, clock, key, fingerprint, request_id)
        except BaseException:
            done.set_result(None)  # whoever waits on this key decides on its own
            raise
        finally:
            self._in_flight.pop(k, None)
        done.set_result(outcome)
        kind, value = outcome
        return created(value, 201, keyed=True) if kind == "created" else replay(value, fingerprint)

    async def _submit(self, principal: Principal, body: RequestCreate, clock: Clock, key: str | None,
                      fingerprint: str, request_id: str | None) -> tuple[str, Any]:
        """("created", the answer) or ("replay", the stored record)."""
        while True:
            try:
                prepared = await prepare(self.lookups, principal, body, clock, self.settings, request_id=request_id)
            except Problem:
                if key is not None:  # a retried key replays what it made before, even if the input is refused now
                    stored = await stored_record(self.db, IdempotencyRecord, principal.caller, key)
                    if stored is not None:
                        return "replay", stored
                raise
            out = to_out(prepared.req, principal)
            job = Job(prepared, principal, key, fingerprint, out, self._encoded(prepared),
                      asyncio.get_running_loop().create_future())
            # an emergency goes ahead of the bulk waiting: into the writer's next batch (ADR 0021)
            if prepared.req.priority == "emergency":
                self._queue.appendleft(job)
            else:
                self._queue.append(job)
            if self._writer is None:
                self._writer = asyncio.create_task(self._drain(), name="svc_services-intake")
            outcome = await asyncio.shield(job.future)  # a client that goes away must not cancel what others wait on
            if outcome is STALE:
                self.lookups.forget_item(prepared.req.item_code)  # edited or withdrawn since it was cached
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

    def _encoded(self, prepared: Prepared) -> tuple:
        """The rows made ready for their INSERTs here, on the event loop: the writer, which every submission waits
        for, then only joins their texts. A row that cannot be encoded goes as it is."""
        dialect = self.db.dialect
        return (*(inserter.encode(dialect, row) or row for inserter, row in (
            (_INSERT_REQUESTS, prepared.values), (_INSERT_TIMELINE, prepared.timeline),
            (_INSERT_EVENTS, prepared.event))),
            tuple(_INSERT_EVENTS.encode(dialect, row) or row for row in prepared.feeds))

    async def _drain(self) -> None:
        try:
            while self._queue:
                async with self.db.write_gate():  # the service's other SQLite writers wait here, not in the database
                    await self.threads.call(self._write_while_queued, asyncio.get_running_loop())
        finally:
            # cleared now, not in a done-callback: a submission queued from here on must start a writer
            self._writer = None

    async def close(self) -> None:
        await self.threads.close()

    # ------------------------------------------------------------------------------------------ on the thread
    def _write_while_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """Batch after batch while submissions wait, each answered as soon as it is written; the event loop does
        not come in between two batches. After MAX_BATCHES_PER_TURN batches the turn ends, so the service's other
        writers waiting at the write gate get the database; it ends at once for an urgent writer waiting there."""
        for _ in range(MAX_BATCHES_PER_TURN):
            if self.db.urgent_writer_waiting:
                return  # an emergency's write (the lane marking its delivery) waits at the gate: it goes next
            with self._taking:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            if not batch:
                return
            started = time.perf_counter()
            try:
                outcomes = self._write(batch)
                BATCH_SECONDS.observe(time.perf_counter() - started)
                BATCH_SIZE.observe(len(batch))
            except Exception as exc:  # noqa: BLE001 - written again one by one, each with its own outcome
                self.failures += 1
                BATCH_FAILURES.inc()
                log.warning("intake batch not written; submissions written one by one",
                            extra={"submissions": len(batch), "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                outcomes = {}
                for job in batch:
                    try:
                        outcomes.update(self._write([job]))
                    except Exception as alone:  # noqa: BLE001 - its caller gets the error
                        outcomes[job] = alone
            loop.call_soon_threadsafe(_settle, batch, outcomes)
            # the batch's feed rows are committed: an urgent feed's relay (the emergency one, on a loop of its own)
            # goes now, woken from here rather than through the service's busy loop (common.outbox, ADR 0022)
            if feed_types := {row["type"] for job in batch for row in job.prepared.feeds}:
                wake_relays(self.db, feed_types)

    def _write(self, batch: list[Job]) -> dict[Job, Any]:
        if self._autocommit and all(isinstance(row, EncodedRow) for job in batch
                                    for row in (*job.rows[:3], *job.rows[3])):
            return self.threads.autocommit(self._batch, batch)
        return self.threads.transaction(self._batch, batch)

    def _batch(self, conn: Connection, batch: list[Job]) -> dict[Job, Any]:
        outcomes: dict[Job, Any] = {}
        keyed = [job for job in batch if job.key is not None]
        params = {"callers": sorted({job.principal.caller for job in keyed}),
                  "keys": sorted({job.key for job in keyed}),
                  "codes": sorted({job.prepared.req.item_code for job in batch})}
        # The possible duplicates are planned for the whole batch, as if every submission were to be written (the
        # rule: `duplicates.plan`), and the plan's first read goes with the lookups; a batch the lookups change
        # (a stored key, a stale item) is planned again for what is written
        plan = duplicates.plan([(job.principal, job.prepared.req) for job in batch], self.settings,
                               [job.prepared.req for job in batch])
        read, read_params = next(plan)
        if read_params is None:  # a statement made for this batch, its values in it: not worth a fused one kept
            plan.close()
            plan, lookups = None, _LOOKUPS
        else:
            lookups, params = _lookups_with(read), {**params, **read_params}
        stored: dict[tuple[str, str], Stored] = {}
        current: dict[str, tuple[int, bool]] = {}
        read_rows: list[Any] = []
        for row in conn.execute(lookups, params):
            if row.kind == "key":
                stored[(row.code, row.key)] = Stored(row.request_hash, row.number, row.response_body)
            elif row.kind == "item":
                current[row.code] = (row.number, bool(row.active))
            else:
                read_rows.append(row)
        todo: list[Job] = []
        for job in batch:
            req = job.prepared.req
            if job.key is not None and (job.principal.caller, job.key) in stored:
                outcomes[job] = ("replay", stored[(job.principal.caller, job.key)])
            elif current.get(req.item_code) != (req.item_version, True):
                outcomes[job] = STALE
            else:
                todo.append(job)
        if not todo:
            return outcomes
        if plan is not None and len(todo) == len(batch):
            found = run_plan_blocking(conn, _resumed(plan, read_rows))
        else:
            if plan is not None:
                plan.close()
            found = run_plan_blocking(conn, duplicates.plan([(job.principal, job.prepared.req) for job in todo],
                                                            self.settings, [job.prepared.req for job in todo]))
        records = []
        for job, dups in zip(todo, found):
            job.out.possible_duplicates = dups
            body = job.out.model_dump_json()
            outcomes[job] = ("created", body)
            if job.key is not None:
                records.append(_INSERT_STORED.encode(conn.dialect.name, values := record_values(
                    caller=job.principal.caller, key=job.key, fingerprint=job.fingerprint, status=201, body=body,
                    now=job.prepared.req.created_at)) or values)
        tables = [[job.rows[i] for job in todo] for i in range(3)]
        tables[2] += [row for job in todo for row in job.rows[3]]  # the feeds' rows beside the events
        RowsInsert.blocking_together(conn, [(_INSERT_REQUESTS, tables[0]), (_INSERT_TIMELINE, tables[1]),
                                            (_INSERT_EVENTS, tables[2]), (_INSERT_STORED, records)])
        self.batches += 1
        self.written += len(todo)
        return outcomes


def _settle(batch: list[Job], outcomes: dict[Job, Any]) -> None:
    for job in batch:
        if not job.future.done():
            job.future.set_result(outcomes.get(job, RuntimeError("intake batch left a submission undecided")))


# what an endpoint takes to submit (`intake: Intake`): the app's one writer, `app.state.intake`
Intake = Annotated[IntakeWriter, state("intake")]
