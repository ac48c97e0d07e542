"""Token-bucket rate limits per member and per user: 429 with Retry-After.

Each bucket holds up to `burst` tokens and refills at `rate` per second; a call takes one token. The user bucket
is checked before the member bucket, so one user's flood does not drain what their app's other users share.
With `ONENET_REDIS_URL` set, buckets live in Redis and are updated by one Lua script (atomic, using the Redis
server's clock, so every gateway replica shares them); otherwise they live in this process's memory.

If Redis is unreachable the limiter lets calls through (and logs it): the limits protect capacity, while the
grants, not the limits, protect the data.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from common.auth import Principal
from common.errors import Problem

log = logging.getLogger("onenet.gateway.ratelimit")

LUA_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry)}
"""


class MemoryBuckets:
    MAX_KEYS = 50_000

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self.buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, rate: float, burst: int) -> tuple[bool, float]:
        now = self.now()
        tokens, ts = self.buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - ts) * rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return True, 0.0
        self.buckets[key] = (tokens, now)
        if len(self.buckets) > self.MAX_KEYS:
            self._prune(now, rate, burst)
        return False, (1 - tokens) / rate

    def _prune(self, now: float, rate: float, burst: int) -> None:
        full_after = burst / rate
        self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < full_after}

    async def aclose(self) -> None:
        pass


class RedisBuckets:
    def __init__(self, url: str, *, prefix: str = "onenet:rl:", timeout: float = 0.5) -> None:
        import redis.asyncio as aioredis

        # A slow Redis must not slow every call: after `timeout` seconds the call is let through (fail open).
        self.redis = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.script = self.redis.register_script(LUA_TAKE)
        self.prefix = prefix

    async def take(self, key: str, rate: float, burst: int) -> tuple[bool, float]:
        try:
            allowed, retry = await self.script(keys=[self.prefix + key], args=[rate, burst])
        except Exception as exc:  # noqa: BLE001 - fail open, see the module docstring
            log.warning("rate limiter: Redis unavailable (%s); call let through", exc)
            return True, 0.0
        return bool(int(allowed)), float(retry)

    async def aclose(self) -> None:
        await self.redis.aclose()


class RateLimiter:
    def __init__(self, buckets, *, member_rate: float, member_burst: int, user_rate: float, user_burst: int) -> None:
        self.buckets = buckets
        self.member = (member_rate, member_burst)
        self.user = (user_rate, user_burst)

    async def check(self, principal: Principal) -> None:
        if principal.user != principal.member:
            ok, retry = await self.buckets.take(f"u:{principal.member}:{principal.user}", *self.user)
            if not ok:
                raise _limited(retry, USER_DETAIL)
        ok, retry = await self.buckets.take(f"m:{principal.member}", *self.member)
        if not ok:
            raise _limited(retry, MEMBER_DETAIL)

    async def aclose(self) -> None:
        await self.buckets.aclose()


USER_DETAIL = ("您的请求过于频繁", "Too many requests from this user")
MEMBER_DETAIL = ("本单位的请求过于频繁", "Too many requests from this member")


def _limited(retry: float, detail: tuple[str, str]) -> Problem:
    return limited_problem(max(1, math.ceil(retry)), detail)


def limited_problem(seconds: int | str, detail: tuple[str, str]) -> Problem:
    """The 429 problem (also rendered for the edge, with `{seconds}` for it to fill in)."""
    return Problem(429, "rate_limited", (f"{detail[0]}，请 {seconds} 秒后再试", f"{detail[1]}; retry in {seconds} s"),
                   headers={"Retry-After": str(seconds)})


def build_limiter(settings) -> RateLimiter | None:
    if not settings.rate_limit_enabled:
        return None
    buckets = (RedisBuckets(settings.redis_url, prefix=settings.redis_prefix,
                            timeout=settings.redis_timeout_seconds) if settings.redis_url else MemoryBuckets())
    return RateLimiter(buckets, member_rate=settings.rate_member_per_second, member_burst=settings.rate_member_burst,
                       user_rate=settings.rate_user_per_second, user_burst=settings.rate_user_burst)
