"""Brute force at /auth/v1/token backs off (issue 23, finding 5: 211 wrong passwords in a row were answered, and
the right one still worked at once).

Policy: after 5 failed sign-ins for one account (or 20 from one source address) within the window, further
attempts for it are refused with a 429 problem and Retry-After, the right password too, for a back-off that
doubles from 60 s up to 15 minutes; a right password resets the account's count; every refusal is in the log;
the counts are shared by the gateway's replicas (database, or Redis when configured). Time is the gateway's
FrozenClock, moved by hand."""
from __future__ import annotations

import asyncio
import logging
import os
import uuid
from types import SimpleNamespace

import httpx
import pytest

from tests.components import needs

REDIS_URL = os.environ.get("ONENET_TEST_REDIS_URL")
PASSWORD = "right-password-for-tests"
PREFIX = f"onenet:test-login-{uuid.uuid4().hex[:12]}:"
STORES = [pytest.param({}, id="database"),
          # a generous Redis timeout: what is tested is the shared count, not the fall-back to the database (a loaded
          # machine opening 30 connections at once can miss the default 0.5 s)
          pytest.param({"redis_url": REDIS_URL or "", "redis_prefix": PREFIX, "redis_timeout_seconds": 5.0}, id="redis",
                       marks=[needs("redis", bool(REDIS_URL), "Redis not configured (set ONENET_TEST_REDIS_URL)"),
                              pytest.mark.redis])]
pytestmark = pytest.mark.parametrize("exchange", STORES, indirect=True)


@pytest.fixture
async def gw(exchange):
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import User

    x = exchange
    async with x.app.state.db.session() as s, s.begin():
        for name in ("staff1", "staff2"):
            s.add(User(username=name, display_name=name, password_hash=hash_secret(PASSWORD),
                       role="community_staff", scopes=["community:110105001001"], member_code="community-xf",
                       status="active", created_at=x.clock.now()))
    yield x
    if x.app.state.settings.redis_url:
        import redis.asyncio as aioredis

        r = aioredis.from_url(REDIS_URL)
        keys = [k async for k in r.scan_iter(PREFIX + "*")]
        if keys:
            await r.delete(*keys)
        await r.aclose()


def _client(x, source: str = "198.51.100.7", app=None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app or x.app, client=(source, 40000)),
                             base_url="http://gw")


async def _login(client, username: str = "staff1", password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/v1/token", data={"grant_type": "password", "username": username,
                                                     "password": password})


def _refused(r: httpx.Response, retry_after: int) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "too_many_attempts" and r.headers["retry-after"] == str(retry_after)
    assert "access_token" not in r.text


async def test_five_wrong_passwords_back_off_the_account_even_for_the_right_one(gw, caplog):
    x = gw
    async with _client(x) as c:
        for _ in range(5):
            assert (await _login(c, password="wrong")).status_code == 401
        with caplog.at_level(logging.WARNING, logger="onenet.gateway.auth"):
            _refused(await _login(c), 60)
        refusals = [r for r in caplog.records if getattr(r, "event", None) == "auth.login_backoff_refused"]
        assert [(r.username, r.source, r.refused_by, r.retry_after_s) for r in refusals] == [
            ("staff1", "198.51.100.7", "account", 60)]
        # the other account, from the same source, is not held back
        assert (await _login(c, "staff2")).status_code == 200
        x.clock.advance(seconds=30)
        _refused(await _login(c), 30)
        x.clock.advance(seconds=30)
        r = await _login(c)
        assert r.status_code == 200 and r.json()["access_token"], r.text


async def test_the_back_off_doubles_with_each_further_failure_up_to_the_cap(gw):
    x = gw
    async with _client(x) as c:
        for _ in range(5):
            assert (await _login(c, password="wrong")).status_code == 401
        for wait in (60, 120, 240, 480, 900, 900):
            _refused(await _login(c, password="wrong"), wait)
            x.clock.advance(seconds=wait)
            assert (await _login(c, password="wrong")).status_code == 401  # the back-off is over: one more guess
        _refused(await _login(c), 900)


async def test_a_right_password_resets_the_accounts_count(gw):
    x = gw
    async with _client(x) as c:
        for _ in range(2):
            for _ in range(4):
                assert (await _login(c, password="wrong")).status_code == 401
            assert (await _login(c)).status_code == 200
        for _ in range(4):
            assert (await _login(c, password="wrong")).status_code == 401
        assert (await _login(c)).status_code == 200


async def test_a_quiet_window_forgets_the_count(gw):
    x = gw
    async with _client(x) as c:
        for _ in range(4):
            assert (await _login(c, password="wrong")).status_code == 401
        x.clock.advance(seconds=901)
        for _ in range(4):
            assert (await _login(c, password="wrong")).status_code == 401
        assert (await _login(c)).status_code == 200


async def test_an_unknown_account_backs_off_like_a_real_one(gw):
    """Whether an account exists is not told by when the back-off starts."""
    async with _client(gw) as c:
        for name in ("staff1", "nobody-here"):
            for _ in range(5):
                assert (await _login(c, name, "wrong")).status_code == 401
            _refused(await _login(c, name, "wrong"), 60)


async def test_a_source_guessing_across_accounts_backs_off(gw):
    """20 failures from one address, one per made-up account: that address is refused, the right password of a
    real account too; another address signs in."""
    x = gw
    async with _client(x, "203.0.113.9") as attacker, _client(x, "192.0.2.44") as other:
        for n in range(20):
            assert (await _login(attacker, f"guess-{n}", "wrong")).status_code == 401
        _refused(await _login(attacker), 60)
        assert (await _login(other)).status_code == 200
        # the source's count is not wiped by a success of its own (one valid account must not unlock guessing)
        x.clock.advance(seconds=60)
        assert (await _login(attacker)).status_code == 200
        assert (await _login(attacker, "guess-x", "wrong")).status_code == 401
        _refused(await _login(attacker, "staff2"), 120)


async def test_parallel_guesses_are_counted_in_full(gw):
    """30 guesses at once: five are checked, the rest refused, however the threads finish."""
    async with _client(gw) as c:
        answers = await asyncio.gather(*(_login(c, password=f"wrong-{n}") for n in range(30)))
    assert sorted(r.status_code for r in answers) == [401] * 5 + [429] * 25


async def test_two_replicas_share_the_counts(gw):
    """Failures through one gateway replica back the account off at the other (same database, same Redis)."""
    from gateway.app import create_app

    x = gw
    b = create_app(x.app.state.settings, transports={"departments": httpx.ASGITransport(app=x.emulators)},
                   clock=x.clock)
    async with b.router.lifespan_context(b), _client(x) as via_a, _client(x, app=b) as via_b:
        for client in (via_a, via_b, via_a, via_b, via_a):
            assert (await _login(client, password="wrong")).status_code == 401
        _refused(await _login(via_b), 60)
        _refused(await _login(via_a), 60)
        replica = SimpleNamespace(a=x.app.state.login_throttle, b=b.state.login_throttle)
        assert (replica.a.redis is None) == (replica.b.redis is None) == (not x.app.state.settings.redis_url)


async def test_with_redis_away_the_attempts_are_counted_in_the_database(gw, caplog):
    from gateway.identity.throttle import RedisStore

    x = gw
    throttle = x.app.state.login_throttle
    if throttle.redis is not None:
        await throttle.redis.aclose()
    throttle.redis = RedisStore("redis://127.0.0.1:1/0", throttle.policy, prefix=PREFIX, timeout=0.2)  # nobody there
    async with _client(x) as c:
        with caplog.at_level(logging.WARNING, logger="onenet.gateway.auth"):
            for _ in range(5):
                assert (await _login(c, password="wrong")).status_code == 401
            _refused(await _login(c), 60)
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)
