"""Timeouts and the circuit breaker against a slowed department emulator.

The emulator app runs under a real uvicorn server on a loopback port and the gateway reaches it over its pooled
(pooled keep-alive connections) forwarding path, exactly as deployed; the emulator is slowed with its own configurable latency
(`emulator_latency_ms`). The breaker's clock is a counter the test advances, so closing again after the reset
time needs no waiting, and nothing here asserts how long anything took.
"""
from __future__ import annotations

from contextlib import AsyncExitStack
from types import SimpleNamespace

import httpx
import pytest

from common.clock import FrozenClock
from tests.gateway.conftest import fresh_gateway_db_and_emulators, START, _seed, serve_in_process

ID = "110105194703210823"
SLOW_MS = 1500
TIMEOUT_S = 0.3
RESET_S = 30.0


class StepClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def slowed(db_url, gateway_keys_dir, sqlite_template):
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    emulators = await fresh_gateway_db_and_emulators(db_url, sqlite_template, gateway_keys_dir)
    server, serving, port = await serve_in_process(emulators)
    settings = GatewaySettings(database_url=db_url, keys_dir=gateway_keys_dir, outbox_relay_enabled=False,
                               catalogue_from_openapi=False, upstream_departments=f"http://127.0.0.1:{port}",
                               upstream_timeout_seconds=TIMEOUT_S, upstream_retries=0, breaker_failures=2,
                               breaker_reset_seconds=RESET_S)
    try:
        async with AsyncExitStack() as stack:
            gw = create_app(settings, clock=FrozenClock(START))  # no injected transport: the pooled path
            await _seed(gw)
            await stack.enter_async_context(gw.router.lifespan_context(gw))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw"))
            upstream = gw.state.forwarder.upstreams["departments"]
            assert not upstream.injected
            clock = StepClock()
            upstream.breaker.clock = clock
            token = gw.state.token_issuer.issue(subject="dept-renshe", member="dept-renshe", role="dept_staff",
                                                scopes=["dept:renshe"])["access_token"]
            yield SimpleNamespace(client=client, app=gw, emulators=emulators, breaker=upstream.breaker, clock=clock,
                                  headers={"Authorization": f"Bearer {token}"})
    finally:
        server.should_exit = True
        await serving


async def _ask(x, **headers) -> httpx.Response:
    return await x.client.post("/departments/renshe/v1/queries", json={"id_number": ID},
                               headers={**x.headers, **headers})


async def test_slow_department_times_out_opens_the_breaker_and_recovers(slowed):
    x = slowed
    r = await _ask(x)
    assert r.status_code == 200 and r.json()["data"]["insured"] in (True, False), r.text

    # the department slows down beyond the gateway's upstream timeout: 504 problems
    x.emulators.state.settings.emulator_latency_ms = SLOW_MS
    r = await _ask(x)
    assert r.status_code == 504, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "upstream_timeout" and "超时" in r.json()["detail"]
    assert x.breaker.state == "closed"  # one failure; the threshold is two
    r = await _ask(x, **{"Accept-Language": "en"})
    assert r.status_code == 504 and "timed out" in r.json()["detail"]

    # two failures in a row open the breaker: 503 at once, with Retry-After, without asking the department
    assert x.breaker.state == "open"
    x.emulators.state.settings.emulator_latency_ms = 0  # the department has recovered, but the breaker is open
    r = await _ask(x)
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "upstream_unavailable" and r.headers["content-type"].startswith("application/problem")
    assert int(r.headers["retry-after"]) == RESET_S
    x.clock.t += RESET_S / 2
    r = await _ask(x)
    assert r.status_code == 503 and int(r.headers["retry-after"]) == RESET_S / 2

    # after the reset time one trial call goes through; its success closes the breaker
    x.clock.t += RESET_S / 2
    assert x.breaker.state == "half-open"
    r = await _ask(x)
    assert r.status_code == 200, r.text
    assert x.breaker.state == "closed"
    assert (await _ask(x)).status_code == 200


async def test_a_failed_trial_call_opens_the_breaker_again(slowed):
    x = slowed
    x.emulators.state.settings.emulator_latency_ms = SLOW_MS
    for _ in range(2):
        assert (await _ask(x)).status_code == 504
    assert x.breaker.state == "open"
    x.clock.t += RESET_S
    assert x.breaker.state == "half-open"
    r = await _ask(x)  # the trial call: still too slow
    assert r.status_code == 504
    assert x.breaker.state == "open"
    assert (await _ask(x)).status_code == 503
    # the refused and timed-out calls are in the message log like any other
    await x.app.state.audit.flush()
    async with x.app.state.db.session() as s:
        from sqlalchemy import select

        from gateway.exchange.models import MessageLog

        statuses = [row.status for row in (await s.execute(select(MessageLog).order_by(MessageLog.seq))).scalars()]
    assert statuses == [504, 504, 504, 503]
