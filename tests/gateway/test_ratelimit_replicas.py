"""Rate limits hold across gateway replicas (issue #9): two gateway app instances on one database share their
token buckets through Redis, so a member gets its burst once in total, not once per replica; the rest are 429
with Retry-After, whichever replica they reach."""
from __future__ import annotations

import asyncio
import os
import uuid

from types import SimpleNamespace

import httpx
import pytest
from tests.components import needs

REDIS_URL = os.environ.get("ONENET_TEST_REDIS_URL")
needs_redis = needs("redis", bool(REDIS_URL), "Redis not configured (set ONENET_TEST_REDIS_URL)")

ID = "110105194703210823"
BURST = 6
# Refill so slow (one token per 1000 s) that the test's own duration adds nothing: exactly BURST get through.
LIMITS = {"rate_member_burst": BURST, "rate_member_per_second": 0.001, "rate_user_burst": 100,
          "rate_user_per_second": 0.001, "redis_url": REDIS_URL or ""}


@pytest.fixture
async def replica_b(exchange):
    """A second gateway on the same database and Redis, in front of the same emulators."""
    from gateway.app import create_app

    x = exchange
    b = create_app(x.app.state.settings, transports={"departments": httpx.ASGITransport(app=x.emulators)},
                   clock=x.clock)
    async with b.router.lifespan_context(b):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=b), base_url="http://gw-b") as client:
            yield SimpleNamespace(app=b, client=client)


async def _grant(x, b, member: str) -> None:
    """Apply through replica A; replica B reads it the way its periodic refresh does."""
    from gateway.exchange.service import load_policy

    r = await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验"},
                            headers=x.h(member))
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text
    await load_policy(b.app.state.db, b.app.state.exchange_policy, x.clock.now())


@pytest.fixture
async def fresh_buckets(exchange):
    """Buckets under a prefix of this test's own, so parallel runs on the same Redis do not meet."""
    prefix = f"onenet:rl:test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS_URL)
    keys = [k async for k in r.scan_iter(prefix + "*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


@needs_redis
@pytest.mark.redis
@pytest.mark.parametrize("exchange", [LIMITS], indirect=True)
async def test_member_bucket_is_shared_by_two_replicas(exchange, fresh_buckets, replica_b):
    x, b = exchange, replica_b
    from gateway.ratelimit import RedisBuckets

    a_limiter, b_limiter = x.app.state.exchange_gate.limiter, b.app.state.exchange_gate.limiter
    assert isinstance(a_limiter.buckets, RedisBuckets) and isinstance(b_limiter.buckets, RedisBuckets)
    for limiter in (a_limiter, b_limiter):
        # What is tested is the shared bucket, not failing open: on a loaded machine 18 connections opened at
        # once can miss the 0.5 s connect timeout, and calls let through would look like a bucket per replica.
        await limiter.buckets.aclose()
        limiter.buckets = RedisBuckets(REDIS_URL, prefix=fresh_buckets, timeout=10.0)
    await _grant(x, b, "community-xf")

    headers = x.h("community-xf")
    body = {"id_number": ID}

    async def call(client):
        return await client.post("/departments/renshe/v1/queries", json=body, headers=headers)

    # 3 × BURST calls, concurrently, alternating between the replicas
    responses = await asyncio.gather(*(call(x.client if i % 2 else b.client) for i in range(3 * BURST)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == BURST, statuses
    assert statuses.count(429) == 2 * BURST, statuses
    limited = [r for r in responses if r.status_code == 429]
    assert all(int(r.headers["retry-after"]) >= 1 and r.json()["code"] == "rate_limited" for r in limited)
    # each replica refused some: the bucket they share is empty on both
    served_by_b = [r for i, r in enumerate(responses) if i % 2 == 0]
    served_by_a = [r for i, r in enumerate(responses) if i % 2 == 1]
    assert any(r.status_code == 429 for r in served_by_a) and any(r.status_code == 429 for r in served_by_b)
    # another member's bucket is untouched
    await _grant(x, b, "community-ak")
    r = await b.client.post("/departments/renshe/v1/queries", json=body, headers=x.h("community-ak"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("exchange", [{**LIMITS, "redis_url": ""}], indirect=True)
async def test_without_redis_each_replica_has_its_own_buckets(exchange, replica_b):
    """The contrast: in memory, the same member gets a burst from each replica (documented, not a bug)."""
    x, b = exchange, replica_b
    from gateway.ratelimit import MemoryBuckets

    assert isinstance(b.app.state.exchange_gate.limiter.buckets, MemoryBuckets)
    await _grant(x, b, "community-xf")
    headers = x.h("community-xf")
    statuses = []
    for client in (x.client, b.client):
        for _ in range(BURST + 1):
            statuses.append((await client.post("/departments/renshe/v1/queries", json={"id_number": ID},
                                               headers=headers)).status_code)
    assert statuses.count(200) == 2 * BURST and statuses.count(429) == 2
