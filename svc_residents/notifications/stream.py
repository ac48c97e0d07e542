"""The live stream's wake-ups, shared by every replica.

An SSE connection (router.py) reads its recipient's newest messages from the database and sends those it has not
sent yet; what it waits on between reads is this hub. With Redis (`ONENET_REDIS_URL`), a committed message
publishes its recipient on one channel and every replica's subscriber wakes its own connections for that
recipient at once; without Redis each connection reads again every `notify_stream_poll_seconds` (the database is
what replicas share). A message committed in this process wakes its local connections at once either way.
Nothing is kept in process memory but who is connected here.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("onenet.notifications")
CHANNEL = "onenet:notifications"
_HUBS: dict[int, "Hub"] = {}  # by the id of the app's sync engine: the hub of whoever commits on it


class Hub:
    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self.redis = None
        self.local: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self._task: asyncio.Task | None = None
        self._publishing: set[asyncio.Task] = set()  # referenced until done (the loop keeps only weak ones)

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
        return q

    def unsubscribe(self, recipient: str, q: asyncio.Queue) -> None:
        self.local[recipient].discard(q)
        if not self.local[recipient]:
            del self.local[recipient]

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


def wake_after_commit(session: AsyncSession, recipient: str) -> None:
    """Once the caller's transaction commits, wake the connections of `recipient` (on every replica)."""
    pending = session.info.setdefault("notify_wake", set())
    if not pending:
        sync = session.sync_session
        hub = _HUBS.get(id(sync.get_bind()))

        def after_commit(_s) -> None:
            woken = set(session.info.pop("notify_wake", ()))
            if hub is not None and woken:
                task = asyncio.get_running_loop().create_task(hub.publish(woken))
                hub._publishing.add(task)
                task.add_done_callback(hub._publishing.discard)

        def after_rollback(_s, _previous) -> None:
            session.info.pop("notify_wake", None)

        event.listen(sync, "after_commit", after_commit, once=True)
        event.listen(sync, "after_soft_rollback", after_rollback, once=True)
    pending.add(recipient)
