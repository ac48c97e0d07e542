"""The message log (全程留痕): every forwarded exchange, hash-chained so tampering shows.

Each row stores `prev_hash` (the previous row's `hash`, or 64 zeros for the first) and its own `hash`, the
SHA-256 of the canonical JSON of its content plus `prev_hash`. `verify_chain` walks the rows in `seq` order,
recomputes every hash and names the first row whose content or link does not match.

Off the hot path: the forwarder only appends a record to an in-memory queue; one writer task per process
flushes the queue in batches (every `FLUSH_SECONDS` or `BATCH` records) to the gateway's log-writer process
(`log_process.py`; ADR 10), or writes them itself when it has none. Each batch is one transaction that
reads the chain's tail, computes the batch's hashes in memory, and inserts the log rows (one executemany, in
chain order) and its `exchange.calls` outbox events (`call_events`: one per resource, member, owner, outcome
and minute, with the count; a second executemany) together. On PostgreSQL
the batch takes a transaction-level advisory lock before reading the chain's tail, so several gateway replicas
append to one chain in turn (on SQLite the database's own write lock serialises them: a writer whose read of
the tail went stale fails, rolls back and retries with the records kept).

What a crash can and cannot lose:
- It CAN lose the records still in memory: the calls answered since the last committed batch. Normally that
  is the last flush interval (`FLUSH_SECONDS`, 0.2 s) plus the batch being written; while the database is
  unreachable it is everything queued, up to `max_backlog` calls. The responses already went out; their log
  rows and events did not.
- It CANNOT lose or half-write a committed batch (one transaction), break the chain (the tail is re-read under
  the lock for every batch), or let a row be edited, inserted or deleted in the middle unnoticed
  (`onenet audit verify`). Deleting rows at the very end of the chain is only visible against an anchor kept
  elsewhere (verify prints the tail hash and count for that purpose).
- When the database is unreachable the writer retries with back-off and keeps the records; if the backlog
  reaches `max_backlog` the gateway refuses new exchanges (503) rather than forward calls it cannot log.

Backpressure: under a load the writer cannot keep up with (the writer shares the event loop with the calls, and
a busy loop gives it one turn among many), new calls wait before they are forwarded once `soft_backlog` records
are queued, until the writer's next batch is committed; the burst is answered later rather than refused. A call
is refused with 503 only when the backlog is full (`max_backlog`) and the writer is failing or has not caught up
within `admit_wait` seconds (measured before this: under 16 connections the backlog filled in seconds on a
healthy database, and 40 % of the calls were refused).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

import orjson
from sqlalchemy import select, text

from common.clock import Clock
from common.periodic import run_periodically
from common.bulk_insert import RowsInsert
from common.db import Database
from common.ids import new_id

log = logging.getLogger("onenet.gateway.audit")

GENESIS = "0" * 64
FLUSH_SECONDS = 0.2
BATCH = 500
ADVISORY_LOCK_KEY = 4207113  # arbitrary, constant: "the gateway's message-log chain"

def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_time(at: datetime) -> str:
    # "%Y-%m-%dT%H:%M:%S.%fZ", by isoformat (a third of strftime's cost)
    return at.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def row_hash(row) -> str:
    return content_hash({k: getattr(row, k) for k in CONTENT_FIELDS})


def content_hash(values: dict) -> str:
    """The hash of one record from its column values (a mapping with at least CONTENT_FIELDS)."""
    content = {k: values[k] for k in CONTENT_FIELDS}
    content["at"] = _canonical_time(content["at"])
    content["latency_ms"] = f"{float(content['latency_ms']):.3f}"
    # byte for byte json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(), the
    # form the chain was defined with (tests/gateway/test_log_process.py checks the two agree), several times faster
    return sha256_hex(orjson.dumps(content, option=orjson.OPT_SORT_KEYS))


class Exchange(NamedTuple):
    """One call as the forwarder saw it (what goes into the log). The row id is given when the call is
    recorded, so a batch sent again after the writer process died is recognised (`write_batch`)."""

    id: str
    at: datetime
    member: str
    user: str
    resource: str | None
    owner: str | None
    purpose: str | None
    method: str
    path: str
    status: int
    latency_ms: float
    request_id: str | None
    request_hash: str
    response_hash: str


# What a row's hash covers: the call as recorded and the link to the row before it.
CONTENT_FIELDS = (*Exchange._fields, "prev_hash")


class AuditWriter:
    def __init__(self, db: Database, log_model, outbox_model, *, max_backlog: int = 10_000,
                 soft_backlog: int | None = None, admit_wait: float = 5.0, process=None,
                 clock: Clock | None = None) -> None:
        """`process`: a `log_process.LogProcess` that writes the batches in a process of its own (deployed);
        without one they are written here, on this event loop (tests, tools)."""
        self.db = db
        self.clock = clock or Clock()
        self.process = process
        self.model = log_model
        self.outbox_model = outbox_model
        self.max_backlog = max_backlog
        self.soft_backlog = min(max_backlog, soft_backlog if soft_backlog is not None else 4 * BATCH)
        self.admit_wait = admit_wait
        self.failing = False  # the last write failed (the database is unreachable or refusing)
        self.waited = 0  # how many calls were held back for the writer (the tests read it)
        self._pending: list[Exchange] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._progress: asyncio.Future | None = None  # resolved after each committed batch
        # on SQLite one statement per table, without a GIL handover per row beside the busy loop (common.db)
        self._insert_log = RowsInsert(log_model.__table__)
        self._insert_events = RowsInsert(outbox_model.__table__)

    def accepting(self) -> bool:
        return len(self._pending) < self.max_backlog

    async def admit(self) -> bool:
        """Before a call is forwarded: True at once while the backlog is short; past `soft_backlog`, wait for
        the writer to commit (backpressure); False when the call must be refused (the backlog is full and the
        writer is failing, or the writer has not caught up within `admit_wait` seconds)."""
        if len(self._pending) < self.soft_backlog:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.admit_wait
        self.waited += 1
        while len(self._pending) >= self.soft_backlog:
            if self.failing:
                return self.accepting()  # writes fail: keep what fits in memory, refuse beyond it
            remaining = deadline - loop.time()
            if remaining <= 0:
                return self.accepting()
            if self._progress is None or self._progress.done():
                self._progress = loop.create_future()
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._progress), remaining)
            except asyncio.TimeoutError:
                pass
        return True

    def _committed(self) -> None:
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)

    def record(self, ex: Exchange) -> None:
        """Hot path: O(1), no I/O."""
        self._pending.append(ex)
        if len(self._pending) >= BATCH:
            self._wake.set()

    def record_many(self, records: list[Exchange]) -> None:
        self._pending.extend(records)
        if len(self._pending) >= BATCH:
            self._wake.set()

    async def flush(self) -> int:
        """Write everything queued so far (also used by tests and at shutdown)."""
        written = 0
        async with self._lock:
            while self._pending:
                batch = self._pending[:BATCH]
                try:
                    await self._write(batch)
                except Exception:
                    self.failing = True
                    self._committed()  # waiting calls re-check: now they are refused once the backlog is full
                    raise
                self.failing = False
                del self._pending[:len(batch)]
                written += len(batch)
                self._committed()
        return written

    async def _write(self, batch: list[Exchange]) -> None:
        if self.process is not None:
            await self.process.write(batch)
        else:
            await write_batch(self.db, self.model, self.outbox_model, batch,
                              inserts=(self._insert_log, self._insert_events), clock=self.clock)

    async def run_forever(self, stop: asyncio.Event) -> None:
        # a failed write keeps the records in memory and is tried again, backing off up to 5 s
        await run_periodically("gateway/message-log", self.flush, stop, interval=FLUSH_SECONDS, jitter=0,
                               run_first=False, max_backoff=5.0, wake=self._wake)
        try:
            await self.flush()
        except Exception:  # noqa: BLE001
            log.exception("message log: %d records could not be written at shutdown", len(self._pending))
        if self.process is not None:
            await self.process.aclose()


async def write_batch(db: Database, log_model, outbox_model, batch: list[Exchange], *, inserts=None,
                      resend: bool = False, clock: Clock | None = None) -> int:
    """One transaction per batch: the chain is computed in memory, then the log rows are inserted in chain order
    (so `seq` order is chain order) and their `exchange.calls` events after them (common.bulk_insert.RowsInsert: one
    statement per table on SQLite). `resend`: the batch may have been committed already by a writer process
    that died before saying so; rows whose id is stored are left out. Returns the rows written."""
    insert_log, insert_events = inserts or (RowsInsert(log_model.__table__), RowsInsert(outbox_model.__table__))
    async with db.session() as session, session.begin():
        if db.dialect == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        if resend:
            stored = set((await session.execute(
                select(log_model.id).where(log_model.id.in_([ex.id for ex in batch])))).scalars())
            batch = [ex for ex in batch if ex.id not in stored]
            if not batch:
                return 0
        prev = (await session.execute(
            select(log_model.hash).order_by(log_model.seq.desc()).limit(1))).scalar() or GENESIS
        now = (clock or Clock()).now()  # when the events were queued; the calls carry their own times
        rows, stamps = chained_rows(batch, prev)
        conn = await session.connection()
        if db.dialect == "sqlite":
            # One executemany of plain tuples (the stamps are already SQLite's text): sqlite3 binds the rows in C,
            # about half the cost of RowsInsert's json_each statement for these 16 columns, and the writer
            # process has no busy event loop to hand the GIL to between rows (bench/gateway/, ADR 0012).
            await conn.exec_driver_sql(SQLITE_INSERT_LOG, rows)
        else:
            await insert_log(conn, [dict(zip(LOG_COLUMNS, row), at=ex.at) for row, ex in zip(rows, batch)])
        await insert_events(conn, call_events(batch, now, stamps))
    return len(rows)


LOG_COLUMNS = ("id", "at", "member", "user", "resource", "owner", "purpose", "method", "path", "status",
               "latency_ms", "request_id", "request_hash", "response_hash", "prev_hash", "hash")
SQLITE_INSERT_LOG = (f"INSERT INTO exchange_message_log ({', '.join(LOG_COLUMNS)}) "
                     f"VALUES ({', '.join('?' for _ in LOG_COLUMNS)})")


def chained_rows(batch: list[Exchange], prev: str) -> tuple[list[tuple], list[str]]:
    """The batch's rows (values in `LOG_COLUMNS` order, the time as the text SQLite stores:
    `YYYY-MM-DD HH:MM:SS.ffffff`, UTC), each hashed over its content and the previous row's hash, and those
    times. The hash is `content_hash` of the row, computed without its generic steps: the canonical time from
    that same text, the content built with its keys already sorted (tests/gateway/test_log_process.py checks
    that the two agree)."""
    rows: list[tuple] = []
    stamps: list[str] = []
    utc = timezone.utc
    for ex in batch:
        at = ex.at
        if at.utcoffset():
            at = at.astimezone(utc)
        stamp = at.isoformat(" ", "microseconds")[:26]  # the "+00:00" dropped
        latency = round(ex.latency_ms, 3)
        path = ex.path[:500]
        content = {"at": f"{stamp[:10]}T{stamp[11:]}Z", "id": ex.id, "latency_ms": f"{latency:.3f}",
                   "member": ex.member, "method": ex.method, "owner": ex.owner, "path": path, "prev_hash": prev,
                   "purpose": ex.purpose, "request_hash": ex.request_hash, "request_id": ex.request_id,
                   "resource": ex.resource, "response_hash": ex.response_hash, "status": ex.status,
                   "user": ex.user}
        row_hash_ = hashlib.sha256(orjson.dumps(content)).hexdigest()
        rows.append((ex.id, stamp, ex.member, ex.user, ex.resource, ex.owner, ex.purpose, ex.method, path,
                     ex.status, latency, ex.request_id, ex.request_hash, ex.response_hash, prev, row_hash_))
        stamps.append(stamp)
        prev = row_hash_
    return rows, stamps


def call_events(batch: list[Exchange], now: datetime, stamps: list[str] | None = None) -> list[dict]:
    """The batch's `exchange.calls` events for svc_metrics (calls per resource, refused calls): one per resource,
    calling member, owner, outcome and minute, with the count and the statuses. One event per call cost the
    gateway, its log writer and svc_metrics more than the message log itself (bench/intake.py: about a tenth of
    the platform's CPU per submission); every call stays in the message log, and the event names the first and
    last of its rows. Grouped within a (UTC) minute, so each event falls in one day of any period svc_metrics
    reports; `stamps`: the rows' times as `chained_rows` wrote them (their first 16 characters name the minute)."""
    groups: dict[tuple, dict] = {}
    if stamps is None:
        stamps = [ex.at.astimezone(timezone.utc).isoformat(" ", "minutes") for ex in batch]
    for ex, stamp in zip(batch, stamps):
        outcome = "ok" if ex.status < 400 else ("refused" if ex.status in (401, 403, 429) else "error")
        subject = ex.resource or ex.path[:64]
        key = (subject, ex.resource, ex.member, ex.owner, outcome, stamp[:16])
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "event_id": new_id(), "type": "exchange.calls", "occurred_at": ex.at, "community": None,
                "grid": None, "subject": subject,
                "data": {"resource": ex.resource, "member": ex.member, "owner": ex.owner, "outcome": outcome,
                         "refused": outcome == "refused", "count": 0, "statuses": {},
                         "first_log_id": ex.id, "last_log_id": ex.id},
                "created_at": now, "next_attempt_at": now, "attempts": 0}
        data = group["data"]
        data["count"] += 1
        status = str(ex.status)
        data["statuses"][status] = data["statuses"].get(status, 0) + 1
        data["last_log_id"] = ex.id
        if ex.at < group["occurred_at"]:
            group["occurred_at"] = ex.at
    return list(groups.values())


@dataclass
class VerifyResult:
    ok: bool
    count: int
    tail_hash: str
    first_bad_seq: int | None = None
    first_bad_id: str | None = None
    reason: str | None = None


async def verify_chain(db: Database, model, *, batch: int = 1000) -> VerifyResult:
    prev = GENESIS
    count = 0
    last_seq = 0
    while True:
        async with db.session() as session:
            rows = (await session.execute(select(model).where(model.seq > last_seq).order_by(model.seq)
                                          .limit(batch))).scalars().all()
        if not rows:
            return VerifyResult(ok=True, count=count, tail_hash=prev)
        for row in rows:
            if row.prev_hash != prev:
                return VerifyResult(False, count, prev, row.seq, row.id,
                                    "prev_hash does not match the previous record (row inserted or deleted)")
            if row_hash(row) != row.hash:
                return VerifyResult(False, count, prev, row.seq, row.id, "content does not match its hash")
            prev = row.hash
            count += 1
            last_seq = row.seq
