"""Token-bucket rate limits per member and per user, in memory and on Redis (shared by replicas)."""
from __future__ import annotations

import os
import uuid

import pytest
from tests.components import needs

from gateway.ratelimit import MemoryBuckets, RedisBuckets

REDIS_URL = os.environ.get("ONENET_TEST_REDIS_URL")
needs_redis = needs("redis", bool(REDIS_URL), "Redis not configured (set ONENET_TEST_REDIS_URL)")
ID = "110105194703210823"


async def test_memory_bucket_refills_at_its_rate():
    t = [100.0]
    b = MemoryBuckets(now=lambda: t[0])
    assert (await b.take("k", 1.0, 2))[0] and (await b.take("k", 1.0, 2))[0]
    ok, retry = await b.take("k", 1.0, 2)
    assert not ok and retry == pytest.approx(1.0)
    t[0] += 0.5
    ok, retry = await b.take("k", 1.0, 2)
    assert not ok and retry == pytest.approx(0.5)
    t[0] += 0.5
    assert (await b.take("k", 1.0, 2))[0]
    assert (await b.take("other", 1.0, 2))[0]


async def _call(x, member, user=None):
    return await x.client.post("/departments/renshe/v1/queries", json={"id_number": ID},
                               headers=x.h(member, user=user))


async def _limits_apply(x):
    await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验"},
                        headers=x.h("community-xf"))
    # per user: two in the burst, the third waits
    assert (await _call(x, "community-xf", "staff-a")).status_code == 200
    assert (await _call(x, "community-xf", "staff-a")).status_code == 200
    r = await _call(x, "community-xf", "staff-a")
    assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
    assert int(r.headers["retry-after"]) >= 1
    # another user of the same member still has their own bucket, until the member's is empty (burst 3)
    assert (await _call(x, "community-xf", "staff-b")).status_code == 200
    r = await _call(x, "community-xf", "staff-b")
    assert r.status_code == 429 and "retry-after" in r.headers
    # another member is unaffected (refused for want of a grant, not for the rate)
    assert (await _call(x, "community-ak")).status_code == 403
    # refused calls are logged like any other
    await x.app.state.audit.flush()
    r = await x.client.get("/exchange/v1/log", headers=x.h("dept-renshe"))
    assert [i["status"] for i in r.json()["items"]].count(429) == 2


LIMITS = {"rate_user_burst": 2, "rate_user_per_second": 0.2, "rate_member_burst": 3, "rate_member_per_second": 0.2}


@pytest.mark.parametrize("exchange", [LIMITS], indirect=True)
async def test_limits_in_memory(exchange):
    from gateway.ratelimit import MemoryBuckets as M
    assert isinstance(exchange.app.state.exchange_gate.limiter.buckets, M)
    await _limits_apply(exchange)


@pytest.fixture
async def clean_redis():
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS_URL)
    keys = [k async for k in r.scan_iter("onenet:rl:*")]
    if keys:
        await r.delete(*keys)
    yield
    await r.aclose()


@needs_redis
@pytest.mark.redis
@pytest.mark.parametrize("exchange", [{**LIMITS, "redis_url": REDIS_URL or ""}], indirect=True)
async def test_limits_on_redis(clean_redis, exchange):
    limiter = exchange.app.state.exchange_gate.limiter
    assert isinstance(limiter.buckets, RedisBuckets)
    prefix = limiter.buckets.prefix
    await limiter.buckets.aclose()
    limiter.buckets = RedisBuckets(REDIS_URL, prefix=prefix, timeout=10.0)   # limits, not failing open, are tested
    await _limits_apply(exchange)


@needs_redis
@pytest.mark.redis
async def test_redis_buckets_are_shared_between_replicas():
    prefix = f"onenet:rl:test-{uuid.uuid4().hex}:"
    a, b = RedisBuckets(REDIS_URL, prefix=prefix, timeout=10.0), RedisBuckets(REDIS_URL, prefix=prefix, timeout=10.0)
    try:
        assert (await a.take("m:x", 1.0, 2))[0]
        assert (await b.take("m:x", 1.0, 2))[0]
        ok, retry = await a.take("m:x", 1.0, 2)
        assert not ok and 0 < retry <= 1.0
        ok, _ = await b.take("m:x", 1.0, 2)
        assert not ok
        assert (await b.take("m:y", 1.0, 2))[0]
        ttl = await a.redis.pttl(prefix + "m:x")
        assert 0 < ttl <= 3000
    finally:
        await a.redis.delete(prefix + "m:x", prefix + "m:y")
        await a.aclose()
        await b.aclose()


async def test_redis_down_lets_calls_through():
    b = RedisBuckets("redis://127.0.0.1:1/0")
    try:
        assert await b.take("m:x", 1.0, 1) == (True, 0.0)
    finally:
        await b.aclose()
