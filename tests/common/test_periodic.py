"""common.periodic: a failing run is logged with its traceback and counted, and the loop goes on; AGAIN, DONE,
attempts, wake and stop steer it."""
from __future__ import annotations

import asyncio
import logging

from prometheus_client import REGISTRY

from common.periodic import AGAIN, DONE, run_periodically


def _runs(job: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("onenet_background_runs_total", {"job": job, "outcome": outcome}) or 0.0


async def test_a_failure_is_logged_with_its_traceback_counted_and_the_loop_goes_on(caplog):
    calls = []
    stop = asyncio.Event()

    async def work():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database blip")
        if len(calls) == 3:
            stop.set()

    before_failed, before_ok = _runs("test/flaky", "failed"), _runs("test/flaky", "ok")
    with caplog.at_level(logging.ERROR, logger="onenet.periodic"):
        await asyncio.wait_for(run_periodically("test/flaky", work, stop, interval=0.01), 5)
    assert len(calls) == 3
    failures = [r for r in caplog.records if "test/flaky" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info and "database blip" in str(failures[0].exc_info[1])
    assert _runs("test/flaky", "failed") - before_failed == 1
    assert _runs("test/flaky", "ok") - before_ok == 2


async def test_again_runs_at_once_and_done_ends_the_loop():
    calls = []

    async def work():
        calls.append(1)
        return AGAIN if len(calls) < 5 else DONE

    # an interval of an hour: only AGAIN can make five runs happen within the timeout
    await asyncio.wait_for(run_periodically("test/batches", work, asyncio.Event(), interval=3600), 5)
    assert len(calls) == 5


async def test_attempts_bound_a_task_retried_until_it_succeeds():
    calls = []

    async def work():
        calls.append(1)
        raise RuntimeError("not yet")

    await asyncio.wait_for(run_periodically("test/attempts", work, asyncio.Event(), interval=0.01, attempts=3), 5)
    assert len(calls) == 3


async def test_wake_cuts_the_wait_short_and_stop_ends_it():
    calls = []
    stop, wake = asyncio.Event(), asyncio.Event()

    async def work():
        calls.append(1)

    task = asyncio.create_task(run_periodically("test/wake", work, stop, interval=3600, wake=wake))
    await asyncio.sleep(0.05)
    assert len(calls) == 1  # ran first, now waits an hour
    wake.set()
    await asyncio.sleep(0.05)
    assert len(calls) == 2
    stop.set()
    await asyncio.wait_for(task, 1)  # stop ends the hour's wait at once


async def test_run_first_false_waits_one_interval_and_zero_disables():
    calls = []

    async def work():
        calls.append(1)

    stop = asyncio.Event()
    task = asyncio.create_task(run_periodically("test/later", work, stop, interval=3600, run_first=False))
    await asyncio.sleep(0.05)
    assert calls == []
    stop.set()
    await asyncio.wait_for(task, 1)
    await asyncio.wait_for(run_periodically("test/off", work, asyncio.Event(), interval=0), 1)
    assert calls == []


async def test_repeated_failures_back_off_and_a_success_resets(monkeypatch):
    """The waits asked for, not the time they took (the machine is shared): 0.02 doubling to the cap, and the
    interval again after a success."""
    from common import periodic

    waits: list[float] = []
    stop = asyncio.Event()

    async def record(stop_, wake, seconds):
        waits.append(round(seconds, 3))
        return False

    monkeypatch.setattr(periodic, "_wait", record)
    outcomes = iter([RuntimeError, RuntimeError, RuntimeError, RuntimeError, None, RuntimeError])

    async def work():
        outcome = next(outcomes, None)
        if len(waits) >= 6:
            stop.set()
        if outcome is RuntimeError:
            raise RuntimeError("down")

    await asyncio.wait_for(run_periodically("test/backoff", work, stop, interval=0.02, jitter=0, max_backoff=0.1),
                           5)
    assert waits[:6] == [0.02, 0.04, 0.08, 0.1, 0.02, 0.02]


def test_the_blocking_twin_runs_in_a_thread_until_stopped(caplog):
    import threading

    from common.periodic import run_periodically_blocking

    calls = []
    stop = threading.Event()

    def work():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("stderr closed")
        if len(calls) == 3:
            stop.set()

    with caplog.at_level(logging.ERROR, logger="onenet.periodic"):
        thread = threading.Thread(target=run_periodically_blocking, args=("test/thread", work, stop),
                                  kwargs={"interval": 0.01})
        thread.start()
        thread.join(5)
    assert not thread.is_alive() and len(calls) == 3
    assert any("test/thread" in r.getMessage() and r.exc_info for r in caplog.records)
