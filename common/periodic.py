"""Periodic background work: one loop for every job a service runs on a timer (and its twin for a thread, or a
process's main loop, that has no event loop: `run_periodically_blocking`).

A job is an async function of no arguments. `run_periodically` calls it every `interval` seconds (with jitter, so
replicas started together do not run in step) until `stop` is set, and never lets a failure pass silently: each
one is logged with its traceback and counted in `/metrics`, and the loop goes on (backing off when failures
repeat). The job's return value steers the loop: `AGAIN` runs it once more at once (a batch came back full),
`DONE` ends the loop (the work is finished), anything else waits for the next interval.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

log = logging.getLogger("onenet.periodic")

RUNS = Counter("onenet_background_runs_total", "Runs of a periodic background job, by outcome", ["job", "outcome"])
LAST_SUCCESS = Gauge("onenet_background_last_success_seconds",
                     "Unix time of the job's last successful run", ["job"])


class Next(enum.Enum):
    AGAIN = "again"  # run again without waiting
    DONE = "done"    # stop: nothing left to do


AGAIN, DONE = Next.AGAIN, Next.DONE


async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> bool:
    """Sleep up to `seconds`, ending early when `wake` is set; True when `stop` was set meanwhile."""
    if stop.is_set():
        return True
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    if wake is not None:
        wake.clear()
    return stop.is_set()


async def run_periodically(job: str, work: Callable[[], Awaitable[object]], stop: asyncio.Event, *,
                           interval: float, jitter: float = 0.1, run_first: bool = True,
                           max_backoff: float | None = None, wake: asyncio.Event | None = None,
                           attempts: int | None = None) -> None:
    """Run `work` every `interval` seconds until `stop` is set.

    - `jitter`: each wait is `interval` × a random factor in [1 − jitter, 1 + jitter].
    - `run_first`: run at once, else only after the first interval.
    - `max_backoff`: after consecutive failures the wait doubles from `interval` up to this (default: no backoff).
    - `wake`: an event that cuts a wait short (work was queued).
    - `attempts`: end after this many runs (a start-up task retried until it succeeds); None runs forever.
    An `interval` ≤ 0 disables the job.
    """
    if interval <= 0:
        return
    failures = runs = 0
    if not run_first and await _wait(stop, None, _jittered(interval, jitter)):
        return
    while not stop.is_set():
        runs += 1
        try:
            outcome = await work()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged and counted; the next run tries again
            failures += 1
            outcome = count_failure(job, failures)
        else:
            failures = count_success(job)
        if outcome is DONE or (attempts is not None and runs >= attempts):
            return
        if outcome is AGAIN and not failures:
            await asyncio.sleep(0)  # let the loop breathe between full batches
            continue
        if await _wait(stop, wake, _jittered(_next_wait(interval, failures, max_backoff), jitter)):
            return


def run_periodically_blocking(job: str, work: Callable[[], object], stop: threading.Event, *, interval: float,
                              jitter: float = 0.1, run_first: bool = True, max_backoff: float | None = None) -> None:
    """`run_periodically` for a thread or a main loop without an event loop: `work` is a plain function and
    `stop` a `threading.Event`. The same outcomes, logging and counters."""
    if interval <= 0:
        return
    failures = 0
    if not run_first and _sleep(stop, _jittered(interval, jitter)):
        return
    while not stop.is_set():
        try:
            outcome = work()
        except Exception:  # noqa: BLE001 - logged and counted; the next run tries again
            failures += 1
            outcome = count_failure(job, failures)
        else:
            failures = count_success(job)
        if outcome is DONE:
            return
        if outcome is AGAIN and not failures:
            continue
        if _sleep(stop, _jittered(_next_wait(interval, failures, max_backoff), jitter)):
            return


def _sleep(stop: threading.Event, seconds: float) -> bool:
    """Sleep up to `seconds` in short relative sleeps, ending early when `stop` is set; True when it was. Not
    `stop.wait(seconds)`: its deadline is absolute, and under libfaketime (the shifted-date runs) the kernel reads it
    on the unshifted clock, so the wait would last the shift."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.05))
    return True


def count_failure(job: str, failures: int = 1) -> None:
    """Log the exception being handled, with its traceback, and count it for `job`. For a step that runs inside
    another job and must not stop it (the outbox's purge inside its relay), so that its failures show too."""
    RUNS.labels(job, "failed").inc()
    log.exception("background job %s failed", job, extra={"job": job, "failures": failures})


def count_success(job: str) -> int:
    RUNS.labels(job, "ok").inc()
    LAST_SUCCESS.labels(job).set_to_current_time()  # for the scraper, on the host's time
    return 0




def _next_wait(interval: float, failures: int, max_backoff: float | None) -> float:
    if failures and max_backoff is not None:
        return min(max_backoff, interval * 2 ** (failures - 1))
    return interval


def _jittered(seconds: float, jitter: float) -> float:
    return seconds * (1 + random.uniform(-jitter, jitter)) if jitter else seconds
