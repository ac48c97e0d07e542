"""The emergency lane of an urgent outbox relay (`OutboxRelay(own_loop=True)`, common/outbox.py): its passes on a
thread and event loop of their own, with connections of their own, so a service whose loop is saturated by bulk
work does not delay an emergency row's read, send and mark. The passes are the relay's usual ones (claims, order,
retries); only where they run differs."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from common.db import Database


async def run_in_lane(relay: Any, stop: asyncio.Event) -> None:
    """`relay`'s passes on a thread and loop of their own until `stop` (or this task's cancellation) on the
    caller's loop; its sender is closed in the lane, on the loop it was used on."""
    home = asyncio.get_running_loop()
    started, finished = threading.Event(), home.create_future()
    lane: dict[str, Any] = {}

    async def in_lane() -> None:
        lane["loop"], lane["stop"] = asyncio.get_running_loop(), asyncio.Event()
        lane["task"] = asyncio.current_task()
        db = Database(relay.db.url, plan_cache_mode=relay.db.plan_cache_mode)
        relay._lane, relay._loop = (lane["loop"], db), lane["loop"]
        started.set()
        try:
            await relay._passes(lane["stop"])
        finally:
            relay._lane = None
            close = getattr(relay.send, "aclose", None)
            if close is not None:
                await close()
            await db.dispose()

    def settle(outcome: BaseException | None) -> None:
        if not finished.done():
            finished.set_exception(outcome) if outcome else finished.set_result(None)

    def thread() -> None:
        outcome: BaseException | None = None
        try:
            asyncio.run(in_lane())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's task
            outcome = exc
        finally:
            started.set()
        try:
            home.call_soon_threadsafe(settle, outcome)
        except RuntimeError:  # the caller's loop has closed
            pass

    threading.Thread(target=thread, name=f"outbox-lane/{relay.label}", daemon=True).start()
    await asyncio.to_thread(started.wait)
    waiting = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, finished}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        if "loop" in lane and not finished.done():
            try:
                lane["loop"].call_soon_threadsafe(lane["stop"].set)
                if not stop.is_set():  # cancelled: the pass in flight ends now too
                    lane["loop"].call_soon_threadsafe(lane["task"].cancel)
            except RuntimeError:  # the lane's loop has closed meanwhile
                pass
        await asyncio.shield(finished)
