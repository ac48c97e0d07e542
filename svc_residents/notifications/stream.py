"""The live stream (Server-Sent Events) and its wake-ups, shared by every replica.

An SSE connection (`events`, served by router.py) reads its recipient's messages from the database forward from
the last it sent (keyset on the id, in pages) and sends them, on one held connection; what it waits on between
reads is this hub. With Redis (`ONENET_REDIS_URL`), a committed message publishes its recipient on one channel
and every replica's subscriber wakes its own connections for that recipient at once; without Redis each
connection reads again every `notify_stream_poll_seconds` (the database is what replicas share). A message
committed in this process wakes its local connections at once either way. Nothing is kept in process memory but
who is connected here and what each connection sent in the last SETTLE seconds.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson
from prometheus_client import Gauge
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_residents.notifications.models import Notification
from svc_residents.notifications.schemas import NotificationOut

log = logging.getLogger("onenet.notifications")
CHANNEL = "onenet:notifications"
CONNECTED = Gauge("onenet_notification_streams", "Live notification streams (SSE) connected to this process")
PAGE = 200  # messages a read of the stream takes at once (keyset on the id: as many reads as needed)
SETTLE = 10.0  # seconds a sent message stays in a connection's cursor (see Cursor)
CATCH_UP = 500  # what a reconnect with Last-Event-ID is sent at most of what it missed (the newest; it says so)
_HUBS: dict[int, "Hub"] = {}  # by the id of the app's sync engine: the hub of whoever commits on it


class Hub:
    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self.redis = None
        self.local: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._publishing: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak ones)
        # set when an emergency or safety message commits in this process: the delivery scheduler's wait ends at
        # once instead of at its next scan (runtime.dispatch_job), so an alarm's first call is handed over now
        self.dispatch_wake = asyncio.Event()

    @property
    def shared(self) -> bool:
        return self.redis is not None

    async def start(self, engine) -> None:
        _HUBS[id(engine.sync_engine)] = self
        if self.redis_url:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(self.redis_url, socket_connect_timeout=2)
            pubsub = self.redis.pubsub()
            await pubsub.subscribe(CHANNEL)
            self._task = asyncio.create_task(self._listen(pubsub), name="notifications-stream")

    async def _listen(self, pubsub) -> None:
        while True:
            try:
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._wake_local(msg["data"].decode())
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:  # noqa: BLE001 - Redis went away: connections still poll; resubscribe
                log.warning("notification stream: Redis subscription lost (%s); retrying", exc)
                await asyncio.sleep(1.0)
                try:
                    await pubsub.subscribe(CHANNEL)
                except Exception:  # noqa: BLE001 - try again on the next turn
                    pass

    async def stop(self, engine) -> None:
        _HUBS.pop(id(engine.sync_engine), None)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()

    def subscribe(self, recipient: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=1)
        self.local[recipient].add(q)
        CONNECTED.inc()
        return q

    def unsubscribe(self, recipient: str, q: asyncio.Queue) -> None:
        queues = self.local.get(recipient)
        if queues is None or q not in queues:
            return
        queues.discard(q)
        CONNECTED.dec()
        if not queues:
            del self.local[recipient]

    def connections(self) -> int:
        return sum(len(qs) for qs in self.local.values())

    def _wake_local(self, recipient: str) -> None:
        for q in self.local.get(recipient, ()):
            if q.empty():
                q.put_nowait(None)  # one pending wake-up is enough: the connection reads everything new

    async def publish(self, recipients: set[str]) -> None:
        if self.redis is None:
            for r in recipients:
                self._wake_local(r)
            return
        try:
            for r in recipients:
                await self.redis.publish(CHANNEL, r)
        except Exception as exc:  # noqa: BLE001 - the connections' periodic reads still bring the message
            log.warning("notification stream: publish failed (%s)", exc)
            for r in recipients:
                self._wake_local(r)


def wake_after_commit(session: AsyncSession, recipient: str, *, dispatch_now: bool = False) -> None:
    """Once the caller's transaction commits, wake the connections of `recipient` (on every replica), and with
    `dispatch_now` this process's delivery scheduler."""
    if dispatch_now:
        session.info["notify_dispatch_now"] = True
    pending = session.info.setdefault("notify_wake", set())
    if not pending:
        sync = session.sync_session
        hub = _HUBS.get(id(sync.get_bind()))

        def after_commit(_s) -> None:
            woken = set(session.info.pop("notify_wake", ()))
            if session.info.pop("notify_dispatch_now", False) and hub is not None:
                hub.dispatch_wake.set()
            if hub is not None and woken:
                task = asyncio.get_running_loop().create_task(hub.publish(woken))
                hub._publishing.add(task)
                task.add_done_callback(hub._publishing.discard)

        def after_rollback(_s, _previous) -> None:
            session.info.pop("notify_wake", None)
            session.info.pop("notify_dispatch_now", None)

        event.listen(sync, "after_commit", after_commit, once=True)
        event.listen(sync, "after_soft_rollback", after_rollback, once=True)
    pending.add(recipient)


@dataclass(frozen=True, slots=True)
class Plan:
    """One connection's bounds: a heartbeat comment after `heartbeat` seconds of silence, a database read at least
    every `poll` seconds, the end after `seconds` (the lifetime, the caller's max_seconds or the token's expiry,
    whichever is first), `retry` (ms) for the client's reconnect, `max_events` to end early."""

    heartbeat: float
    poll: float
    seconds: float
    retry: int
    max_events: int | None = None


def frame(note: Notification) -> bytes:
    data = orjson.dumps(NotificationOut.model_validate(note).model_dump(mode="json"))
    return b"id: " + note.id.encode() + b"\nevent: notification\ndata: " + data + b"\n\n"


def truncated(oldest_sent: str) -> bytes:
    """Said before a catch-up that leaves older missed messages out: they are in the inbox (GET notifications)."""
    data = orjson.dumps({"catch_up": CATCH_UP, "oldest_sent": oldest_sent})
    return b"event: truncated\ndata: " + data + b"\n\n"


class Cursor:
    """Where a connection reads from: every message above `floor` it has not sent yet. A message sent less than
    SETTLE seconds ago keeps `floor` below it (its id in `sent`): one committed late with a lower id (its
    transaction began first) is still read; after that `floor` moves up to it and it is forgotten."""

    def __init__(self, floor: str) -> None:
        self.floor = floor
        self.sent: dict[str, float] = {}  # id -> when it was sent (monotonic), in the order sent

    def settle(self, now: float) -> None:
        for note_id, at in list(self.sent.items()):
            if at > now - SETTLE:
                break
            del self.sent[note_id]
            self.floor = max(self.floor, note_id)


async def _catch_up(read, mine, last_event_id: str) -> tuple[list[Notification], str, bool]:
    """What a reconnect missed since `last_event_id`: at most the newest CATCH_UP (oldest first), the floor the
    connection reads on from, and whether older ones were left out."""
    newest = await read(mine.order_by(Notification.id.desc()).limit(1))
    missed = await read(mine.where(Notification.id > last_event_id).order_by(Notification.id.desc())
                        .limit(CATCH_UP + 1))
    if len(missed) > CATCH_UP:  # what is left out stays below the floor: never sent on this connection
        return missed[:CATCH_UP][::-1], missed[CATCH_UP].id, True
    # a Last-Event-ID above every message (not one of ours) must not hide the ones to come
    floor = min(last_event_id, newest[0].id) if newest else ""
    return missed[::-1], floor, False


async def events(hub: Hub, session: Callable[[], AsyncSession], inbox: str, last_event_id: str | None,
                 plan: Plan) -> AsyncIterator[bytes]:
    """One held connection: every message for `inbox` as it is committed (`id:` its id, so a reconnect with
    Last-Event-ID gets what it missed first), a comment when quiet, the end at the plan's bound. Each wake-up reads
    forward from the connection's cursor in pages of PAGE (keyset on the id), so however many messages arrived
    between two reads, each is sent once, in order. A client that goes away cancels this generator (Starlette
    watches for the disconnect), and `finally` releases the subscription."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + plan.seconds  # a duration (monotonic), not a time of day
    wake = hub.subscribe(inbox)  # before the first read: nothing committed in between is missed
    try:
        async def read(stmt) -> list[Notification]:
            async with session() as s:
                return list((await s.execute(stmt)).scalars())

        mine = select(Notification).where(Notification.recipient == inbox)
        first: list[Notification] = []
        cut = False
        if last_event_id is None:  # only what comes from now on
            newest = await read(mine.order_by(Notification.id.desc()).limit(1))
            cursor = Cursor(newest[0].id if newest else "")
        else:  # what came since, oldest first
            first, floor, cut = await _catch_up(read, mine, last_event_id)
            cursor = Cursor(floor)
        yield b"retry: %d\n: connected\n\n" % plan.retry
        if cut:
            yield truncated(first[0].id)
        sent = 0
        beat_at = loop.time() + plan.heartbeat

        async def unsent():
            """Pages above the floor, less what was sent: the first page the catch-up (already read)."""
            page = first
            after = cursor.floor
            while True:
                for r in page:
                    if r.id not in cursor.sent:
                        yield r
                if page is not first and len(page) < PAGE:
                    return
                after = page[-1].id if page else after
                page = await read(mine.where(Notification.id > after).order_by(Notification.id).limit(PAGE))

        while True:
            async for r in unsent():
                cursor.sent[r.id] = loop.time()
                yield frame(r)
                sent += 1
                beat_at = loop.time() + plan.heartbeat
                if plan.max_events and sent >= plan.max_events:
                    return
            first = []
            now = loop.time()
            cursor.settle(now)
            if now >= ends:
                return
            if now >= beat_at:
                yield b": keep-alive\n\n"
                beat_at = now + plan.heartbeat
            try:
                await asyncio.wait_for(wake.get(), timeout=max(0.0, min(plan.poll, ends - now, beat_at - now)))
            except TimeoutError:
                pass
    finally:
        hub.unsubscribe(inbox, wake)
