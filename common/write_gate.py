"""The write gate of a SQLite database (`Database.write_gate`): this process's writers take the database in turn,
waiting here rather than in SQLite's busy handler (1, 2, 5, 10 … 100 ms sleeps, which a writer that takes the lock
again at once always beats).

Usable from any thread's event loop (the emergency lane of an urgent outbox relay runs on a loop of its own,
common/outbox_lane.py), first come first served, except that an `urgent` waiter goes ahead of the others: an
emergency's write waits for the writer holding the gate, never behind the queue of bulk writers."""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator


class WriteGate:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future, bool]] = deque()

    @property
    def urgent_waiting(self) -> bool:
        """An urgent writer waits (the intake writer ends its turn early for it)."""
        return bool(self._waiters) and self._waiters[0][2]

    @asynccontextmanager
    async def __call__(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        loop = asyncio.get_running_loop()
        with self._mutex:
            if not self._held:
                self._held = True
                return
            waiter = (loop, loop.create_future(), urgent)
            if urgent:  # ahead of the bulk, behind the urgent ones already waiting
                at = next((i for i, w in enumerate(self._waiters) if not w[2]), len(self._waiters))
                self._waiters.insert(at, waiter)
            else:
                self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._mutex:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            self._release()  # handed to us as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        with self._mutex:
            if not self._waiters:
                self._held = False
                return
            loop, future, _ = self._waiters.popleft()  # the gate stays held: it is handed over
        try:
            loop.call_soon_threadsafe(_grant, future)
        except RuntimeError:  # that waiter's loop has closed: nobody to hand it to
            self._release()


def _grant(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
