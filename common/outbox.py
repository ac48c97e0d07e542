"""Transactional outbox: events are rows committed with the change; a relay ships them to svc_metrics.

Delivery is at-least-once (svc_metrics de-duplicates by event_id). On PostgreSQL several relays can run at
once: each claims its batch with `FOR UPDATE SKIP LOCKED`, so no event is sent by two relays.

Feeds (ADR 0007): rows whose type starts with a *feed prefix* (e.g. `requester_profile.`) are not domain events
for svc_metrics but replica updates for one subscriber service. Every row still has exactly one destination, so
the row's own delivery columns stay the delivery state: the svc_metrics relay excludes the feed prefixes from its
query, and one more relay per feed (`types=include(prefix)`) delivers them with a `FeedSender` (PUT / DELETE of
`{subscriber}/{subject}`). A service without feeds runs the very same query as before.

Urgent feeds (the emergency path, ADR 0022): a relay made with `wake_on_commit=True` does not wait for its next
poll when a row it reads is committed in this process: `record_event` wakes it right after the caller's commit
(an ORM session), and a writer that inserts rows without the ORM calls `wake_relays` after its commit. Waking only
runs the relay's pass earlier; its claims, order and retries are those of any pass (another replica's relay still
finds the rows on its own poll).

An urgent relay made with `own_loop=True` (the emergency lane) runs its passes on a thread and event loop of its
own, with its own connections and its sender's: a service whose loop is saturated by bulk work (the intake's
submissions) no longer delays the read, the PUT and the mark of an emergency row. `wake()` may be called from any
thread (svc_services' intake writer wakes it straight from its writer thread after the commit).
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import and_, delete, event, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import Clock
from common.periodic import AGAIN, Next, count_failure, count_success, run_periodically
from common.db import Database
from common.ids import new_id
from common.outbox_senders import PartialDelivery, Sender

log = logging.getLogger("onenet.outbox")

OUTBOX_PENDING = Gauge("onenet_outbox_pending_events", "Outbox events not yet delivered", ["service"])
OUTBOX_LAG = Gauge("onenet_outbox_lag_seconds", "Age of the oldest undelivered outbox event", ["service"])
OUTBOX_DELIVERED = Gauge("onenet_outbox_delivered_last_batch", "Events delivered in the last relay batch",
                         ["service"])


def record_event(session: AsyncSession, model: type, type_: str, *, subject: str | None, data: dict[str, Any],
                 now: datetime, community: str | None = None, grid: str | None = None,
                 occurred_at: datetime | None = None) -> Any:
    """Add an event to the session; it commits (or rolls back) with the caller's transaction. `now` is the
    caller's clock reading (when it was recorded; `occurred_at` when it happened, if earlier)."""
    row = model(**event_row(type_, subject=subject, data=data, now=now, community=community, grid=grid,
                            occurred_at=occurred_at))
    session.add(row)
    _wake_after_commit(session, type_)
    return row


# running relays that want waking, by the engine their rows are written through (one list per database)
_WAKEABLE: "weakref.WeakKeyDictionary[Any, list[OutboxRelay]]" = weakref.WeakKeyDictionary()


def _waiting(engine: Any, types: Any) -> list["OutboxRelay"]:
    return [r for r in _WAKEABLE.get(engine, ()) if any(r.types.matches(t) for t in types)]


def wake_relays(db: Database, types: Any) -> None:
    """Wake this process's running relays that read any of `types` (event types), after a commit that wrote such
    rows without `record_event`. From any thread (a relay's `wake` is thread-safe)."""
    for relay in _waiting(db.engine.sync_engine, types):
        relay.wake()


def _wake_after_commit(session: Any, type_: str) -> None:
    sync = getattr(session, "sync_session", session)
    if not _WAKEABLE:
        return  # no urgent relay in this process: nothing to do on the hot path
    try:
        engine = sync.get_bind()
    except Exception:  # noqa: BLE001 - an unbound session: its relay polls as before
        return
    engine = getattr(engine, "engine", engine)  # a session bound to a connection
    if not _waiting(engine, (type_,)):
        return
    pending = sync.info.setdefault("outbox_wake", set())
    if not pending:
        def after_commit(_s) -> None:
            for relay in _waiting(engine, sync.info.pop("outbox_wake", ())):
                relay.wake()

        def after_rollback(_s, _previous) -> None:
            sync.info.pop("outbox_wake", None)

        event.listen(sync, "after_commit", after_commit, once=True)
        event.listen(sync, "after_soft_rollback", after_rollback, once=True)
    pending.add(type_)


def event_row(type_: str, *, subject: str | None, data: dict[str, Any], now: datetime,
              community: str | None = None, grid: str | None = None,
              occurred_at: datetime | None = None) -> dict[str, Any]:
    """An outbox row's values (every column but the id), pending: for `record_event` and for writers that
    insert rows without the ORM (svc_services' intake)."""
    return {"event_id": new_id(), "type": type_, "occurred_at": occurred_at or now, "community": community,
            "grid": grid, "subject": subject, "data": data, "created_at": now, "delivered_at": None,
            "attempts": 0, "next_attempt_at": now, "last_error": None}


def event_payload(row: Any, source: str) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "type": row.type,
        "occurred_at": row.occurred_at.isoformat(),
        "source": source,
        "community": row.community,
        "grid": row.grid,
        "subject": row.subject,
        "data": row.data or {},
    }


class TypeFilter:
    """Which outbox rows a relay reads, by event-type prefix: `include` (any of) and `exclude` (none of)."""

    def __init__(self, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> None:
        self.include = tuple(include)
        self.exclude = tuple(p for p in exclude if p not in self.include)

    def clause(self, column):
        parts = []
        if self.include:
            parts.append(or_(*(column.startswith(p, autoescape=True) for p in self.include)))
        parts.extend(not_(column.startswith(p, autoescape=True)) for p in self.exclude)
        return and_(*parts) if parts else None

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)

    def matches(self, type_: str) -> bool:
        """The clause's rule on one type, in Python (which relays a commit wakes)."""
        return ((not self.include or type_.startswith(self.include))
                and not (self.exclude and type_.startswith(self.exclude)))


PURGE_SECONDS = 60.0
PURGE_CHUNK = 5_000


class OutboxRelay:
    def __init__(self, db: Database, model: type, *, source: str, send: Sender, batch_size: int = 200,
                 poll_seconds: float = 0.5, base_backoff: float = 1.0, max_backoff: float = 60.0,
                 clock: Clock | None = None, types: TypeFilter | None = None, label: str | None = None,
                 retention: timedelta | None = None, wake_on_commit: bool = False, own_loop: bool = False) -> None:
        """`types` limits the rows this relay reads (feeds, ADR 0007); `label` names it in the gauges (default:
        the source); `retention`: delivered rows older than this are deleted (None keeps them);
        `wake_on_commit`: while `run_forever` runs, a commit in this process that wrote rows of its types starts
        a pass at once instead of at the next poll (urgent feeds); `own_loop`: `run_forever` runs the passes on a
        thread and event loop of their own (the emergency lane, see the module's docstring)."""
        self.db = db
        self.model = model
        self.source = source
        self.send = send
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.clock = clock or Clock()
        self.types = types or TypeFilter()
        self.label = label or source
        self.retention = retention
        self.wake_on_commit = wake_on_commit
        self.own_loop = own_loop
        self._wake = asyncio.Event()
        self._purged_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # where the passes run (set by run_forever)
        self._lane: tuple[asyncio.AbstractEventLoop, Database] | None = None  # own_loop: its loop and connections

    def wake(self) -> None:
        """Start the next pass now (rows of this relay were just committed). From any thread."""
        loop = self._loop
        if loop is None:
            self._wake.set()
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._wake.set()
            return
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # its loop has closed: the relay has stopped
            pass

    def _here(self) -> Database:
        """The database handle of the running loop: the lane's own connections on its loop, the service's
        elsewhere (the /metrics endpoint measures on the service's loop)."""
        lane = self._lane
        if lane is not None and lane[0] is asyncio.get_running_loop():
            return lane[1]
        return self.db

    def _filtered(self, stmt):
        clause = self.types.clause(self.model.type)
        return stmt if clause is None else stmt.where(clause)

    async def run_once(self) -> int:
        """Claim one batch, send it, mark it delivered. Returns how many events were delivered."""
        if self.db.dialect == "postgresql":
            return await self._run_once_locked(self._here())
        return await self._run_once_single(self._here())

    def _pending(self, now: datetime):
        # the columns a payload needs, as plain rows: building ORM instances (identity map, state tracking) for
        # events that are only read and sent once cost more than the SQL
        m = self.model
        return self._filtered(
            select(m.id, m.event_id, m.type, m.occurred_at, m.community, m.grid, m.subject, m.data, m.attempts)
            .where(m.delivered_at.is_(None), m.next_attempt_at <= now)
            .order_by(m.id).limit(self.batch_size))

    async def _run_once_locked(self, db: Database) -> int:
        # The row locks are held while sending, so a second relay skips this batch instead of resending it.
        now = self.clock.now()
        async with db.engine.begin() as conn:
            rows = (await conn.execute(self._pending(now).with_for_update(skip_locked=True))).all()
            if not rows:
                return 0
            return await self._mark(conn, rows, now, await self._send(rows))

    async def _run_once_single(self, db: Database) -> int:
        # SQLite has one writer and no row locks: read the batch, send it outside any transaction, then mark it
        # in a short write transaction so request handlers are not blocked by the HTTP call.
        now = self.clock.now()
        async with db.engine.connect() as conn:
            rows = (await conn.execute(self._pending(now))).all()
            if not rows:
                return 0
            await conn.commit()  # end the read transaction before the network call
            failure = await self._send(rows)
            # in turn with the service's other writers: holding SQLite's write lock across the loop's hand-offs to
            # aiosqlite while a writer waits in the busy handler cost the intake writer a tenth of its time
            # the service's gate (from the lane too), an urgent relay ahead of the bulk writers waiting there
            async with self.db.write_gate(urgent=self.wake_on_commit):
                delivered = await self._mark(conn, rows, now, failure)
                await conn.commit()
            return delivered

    async def _send(self, rows: list) -> Exception | None:
        try:
            await self.send([event_payload(r, self.source) for r in rows])
        except Exception as exc:  # noqa: BLE001 - any failure means "try again later"
            return exc
        return None

    async def _mark(self, conn, rows: list, now: datetime, failure: Exception | None) -> int:
        # one UPDATE for the whole batch (was one per row through the ORM's unit of work)
        m = self.model
        if failure is not None:
            done = failure.delivered if isinstance(failure, PartialDelivery) else set()
            failed = [r for i, r in enumerate(rows) if i not in done]
            if done:
                await conn.execute(update(m).where(m.id.in_([rows[i].id for i in sorted(done)])).values(
                    delivered_at=self.clock.now(), attempts=m.attempts + 1))
            if failed:
                attempts = max(r.attempts for r in failed) + 1
                delay = min(self.max_backoff, self.base_backoff * 2 ** (attempts - 1))
                await conn.execute(update(m).where(m.id.in_([r.id for r in failed])).values(
                    attempts=m.attempts + 1, next_attempt_at=now + timedelta(seconds=delay),
                    last_error=str(failure)[:500]))
                log.warning("outbox delivery failed; retrying",
                            extra={"relay": self.label, "events": len(failed), "retry_in_s": delay,
                                   "error": str(failure)[:200]})
            OUTBOX_DELIVERED.labels(self.label).set(len(done))
            return len(done)
        await conn.execute(update(m).where(m.id.in_([r.id for r in rows])).values(delivered_at=self.clock.now(),
                                                                                 attempts=m.attempts + 1))
        OUTBOX_DELIVERED.labels(self.label).set(len(rows))
        return len(rows)

    async def measure(self) -> tuple[int, float]:
        m = self.model
        async with self._here().session() as session:
            count, oldest = (await session.execute(self._filtered(
                select(func.count(), func.min(m.created_at)).where(m.delivered_at.is_(None))))).one()
        lag = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:
                from datetime import timezone
                oldest = oldest.replace(tzinfo=timezone.utc)
            lag = max(0.0, (self.clock.now() - oldest).total_seconds())
        OUTBOX_PENDING.labels(self.label).set(count)
        OUTBOX_LAG.labels(self.label).set(lag)
        return count, lag

    async def purge(self, *, chunk: int = PURGE_CHUNK) -> int:
        """Delete this relay's delivered rows older than the retention, in chunks of `chunk` rows (one short
        transaction each). The outbox hands events over; it is not their archive: the service's own tables keep
        its records, svc_metrics keeps the events, the gateway's message log every exchange. Undelivered rows are
        never deleted, however old. Returns how many rows went."""
        if self.retention is None:
            return 0
        m = self.model
        cutoff = self.clock.now() - self.retention
        db = self._here()
        gone = 0
        while True:
            # by ix_outbox_pending (delivered_at first): the oldest deliveries, without reading the pending rows
            oldest = self._filtered(select(m.id).where(m.delivered_at < cutoff).order_by(m.delivered_at).limit(chunk))
            async with self.db.write_gate(), db.engine.begin() as conn:
                n = (await conn.execute(delete(m).where(m.id.in_(oldest.scalar_subquery())))).rowcount or 0
            gone += n
            if n < chunk:
                return gone
            await asyncio.sleep(0)  # a large first purge must not hold the event loop

    async def _purge_now_and_then(self) -> None:
        """The purge, at most every PURGE_SECONDS, as its own job in /metrics (outbox-purge/<label>): a failure is
        logged and counted there and retried next time, and delivery goes on."""
        loop = asyncio.get_running_loop()
        if self.retention is None or (self._purged_at is not None and loop.time() - self._purged_at < PURGE_SECONDS):
            return
        self._purged_at = loop.time()
        job = f"outbox-purge/{self.label}"
        try:
            gone = await self.purge()
        except Exception:  # noqa: BLE001 - counted and logged; retried at the next PURGE_SECONDS
            count_failure(job)
            return
        count_success(job)
        if gone:
            log.info("outbox: delivered rows past retention deleted", extra={"rows": gone, "relay": self.label})

    async def _relay_once(self) -> Next | None:
        await self._purge_now_and_then()
        delivered = await self.run_once()
        await self.measure()
        return AGAIN if delivered >= self.batch_size else None  # a full batch: more are waiting

    async def run_forever(self, stop: asyncio.Event) -> None:
        engine = self.db.engine.sync_engine
        if self.wake_on_commit:
            _WAKEABLE.setdefault(engine, []).append(self)
        try:
            if self.own_loop:
                from common.outbox_lane import run_in_lane

                await run_in_lane(self, stop)
            else:
                self._loop = asyncio.get_running_loop()
                await self._passes(stop)
        finally:
            self._loop = None
            if self.wake_on_commit:
                left = [r for r in _WAKEABLE.get(engine, ()) if r is not self]
                if left:
                    _WAKEABLE[engine] = left
                else:
                    _WAKEABLE.pop(engine, None)

    async def _passes(self, stop: asyncio.Event) -> None:
        await run_periodically(f"outbox/{self.label}", self._relay_once, stop, interval=self.poll_seconds,
                               wake=self._wake)
