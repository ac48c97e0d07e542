"""Back-off for password sign-in: a per-account and a per-source count of failed attempts.

Each attempt is counted before its password is checked (so a burst of parallel guesses is counted in full, not
only those that finished first), and given back when the password was right. After `limit` failures within the
window, the next attempt for that account, or from that source address, is refused with 429 and Retry-After,
the right password too, for a back-off that doubles from `backoff_seconds` with each further failure up to
`backoff_max_seconds`. A right password resets the account's count; the source's count only loses the attempt
(one valid account must not let a source guess at others). A count is forgotten after a quiet window (no
failure for `window_seconds` after its back-off ended).

State is shared by every gateway replica: in Redis when the gateway has one (one Lua script per attempt, atomic),
else in the gateway's database (row locks). Time is the gateway's clock, so tests move it. If Redis fails, the
attempt is counted in the database instead: the back-off holds while Redis is away.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from common.db import Database
from common.errors import Problem
from gateway.identity.models import LoginCount

log = logging.getLogger("onenet.gateway.auth")


@dataclass(frozen=True)
class Policy:
    account_failures: int = 5
    source_failures: int = 20
    window_seconds: float = 900.0
    backoff_seconds: float = 60.0
    backoff_max_seconds: float = 900.0

    def backoff(self, over: int) -> float:
        """The back-off after `over` failures past the limit (0: the one that reached it)."""
        return min(self.backoff_max_seconds, self.backoff_seconds * 2 ** min(over, 32))


def account_key(username: str) -> str:
    # usernames are at most 64 characters; a longer one (no account has it) is kept short, as a digest
    return f"account:{username}" if len(username) <= 64 else f"account#{hashlib.sha256(username.encode()).hexdigest()}"


def source_key(address: str) -> str:
    return f"source:{address[:64]}"


@dataclass
class Charge:
    """One attempt, counted: what to give back when its password was right."""
    account: str
    source: str
    store: DatabaseStore | RedisStore
    # per key: the back-off it had before this attempt, and the one this attempt set (None: none)
    blocks: dict[str, tuple[object, object]] = field(default_factory=dict)


class BackingOff(Exception):
    def __init__(self, retry_after: float, key: str) -> None:
        super().__init__(key)
        self.retry_after = retry_after
        self.key = key


class DatabaseStore:
    """Counts in the gateway's database; each attempt is one transaction holding its rows' locks."""

    PRUNE_EVERY = 200  # attempts between deletions of forgotten counts

    def __init__(self, db: Database, policy: Policy) -> None:
        self.db = db
        self.policy = policy
        self.attempts = 0

    def _insert(self):
        if self.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(LoginCount)

    async def _locked(self, session, keys: list[str], now: datetime) -> dict[str, LoginCount]:
        # insert-or-ignore first: on SQLite that write takes the database's write lock before anything is read;
        # on PostgreSQL the rows then exist to be locked
        await session.execute(self._insert().values([
            {"key": k, "failures": 0, "blocked_until": None, "expires_at": now} for k in keys
        ]).on_conflict_do_nothing(index_elements=["key"]))
        rows = (await session.execute(select(LoginCount).where(LoginCount.key.in_(keys))
                                      .order_by(LoginCount.key).with_for_update()
                                      .execution_options(populate_existing=True))).scalars()
        return {r.key: r for r in rows}

    async def charge(self, keys: dict[str, int], now: datetime) -> dict[str, tuple[object, object]]:
        async with self.db.session() as session, session.begin():
            rows = await self._locked(session, sorted(keys), now)
            for row in rows.values():
                if row.expires_at <= now:  # a quiet window since the last back-off: forgotten
                    row.failures, row.blocked_until = 0, None
            refusing = [(r.blocked_until, k) for k, r in rows.items() if r.blocked_until and r.blocked_until > now]
            if refusing:
                until, key = max(refusing)
                raise BackingOff((until - now).total_seconds(), key)
            blocks = {}
            for key, limit in keys.items():
                row = rows[key]
                before = row.blocked_until
                row.failures += 1
                if row.failures >= limit:
                    row.blocked_until = now + timedelta(seconds=self.policy.backoff(row.failures - limit))
                row.expires_at = max(now, row.blocked_until or now) + timedelta(seconds=self.policy.window_seconds)
                blocks[key] = (before, row.blocked_until)
        await self._prune(now)
        return blocks

    async def succeeded(self, charge: Charge, now: datetime) -> None:
        async with self.db.session() as session, session.begin():
            await session.execute(delete(LoginCount).where(LoginCount.key == charge.account))
            before, ours = charge.blocks[charge.source]
            row = (await self._locked(session, [charge.source], now)).get(charge.source)
            row.failures = max(0, row.failures - 1)
            if ours is not None and row.blocked_until == ours:  # the back-off this attempt set, nobody's since
                row.blocked_until = before

    async def _prune(self, now: datetime) -> None:
        self.attempts += 1
        if self.attempts % self.PRUNE_EVERY:
            return
        async with self.db.session() as session, session.begin():
            await session.execute(delete(LoginCount).where(LoginCount.expires_at < now))

    async def aclose(self) -> None:
        pass


# KEYS: the counts; ARGV: now, window, backoff, backoff max, then each key's limit. Returns {0, retry, key index}
# when a key is backing off, else {1, before_1, set_1, before_2, set_2, ...} ("" for none).
LUA_CHARGE = """
local now, window, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local states, retry, which = {}, 0, 0
for i, key in ipairs(KEYS) do
  local s = redis.call('HMGET', key, 'failures', 'blocked_until', 'expires_at')
  local failures, blocked, expires = tonumber(s[1]) or 0, s[2] or '', tonumber(s[3]) or 0
  if expires <= now then failures, blocked = 0, '' end
  if blocked ~= '' and tonumber(blocked) > now and tonumber(blocked) - now > retry then
    retry, which = tonumber(blocked) - now, i
  end
  states[i] = {failures, blocked}
end
if retry > 0 then return {0, tostring(retry), which} end
local out = {1}
for i, key in ipairs(KEYS) do
  local failures, before = states[i][1] + 1, states[i][2]
  local limit = tonumber(ARGV[4 + i])
  local blocked = before
  local last = now
  if failures >= limit then
    blocked = tostring(now + math.min(cap, base * 2 ^ math.min(failures - limit, 32)))
    last = tonumber(blocked)
  end
  local expires = last + window
  redis.call('HSET', key, 'failures', failures, 'blocked_until', blocked, 'expires_at', tostring(expires))
  redis.call('PEXPIRE', key, math.ceil((expires - now) * 1000))
  table.insert(out, before)
  table.insert(out, blocked)
end
return out
"""

# KEYS: the account's count (reset), the source's (one attempt given back); ARGV: the source's back-off before
# the attempt and the one it set ("" for none).
LUA_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  local f = tonumber(redis.call('HGET', KEYS[2], 'failures')) or 0
  redis.call('HSET', KEYS[2], 'failures', math.max(0, f - 1))
  if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], 'blocked_until') == ARGV[2] then
    redis.call('HSET', KEYS[2], 'blocked_until', ARGV[1])
  end
end
return 1
"""


class RedisStore:
    """Counts in Redis, shared with the other replicas; timestamps are the gateway's clock, in epoch seconds."""

    def __init__(self, url: str, policy: Policy, *, prefix: str, timeout: float) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.charge_script = self.redis.register_script(LUA_CHARGE)
        self.succeeded_script = self.redis.register_script(LUA_SUCCEEDED)
        self.prefix = prefix
        self.policy = policy

    async def charge(self, keys: dict[str, int], now: datetime) -> dict[str, tuple[object, object]]:
        names = list(keys)
        p = self.policy
        out = await self.charge_script(
            keys=[self.prefix + k for k in names],
            args=[now.timestamp(), p.window_seconds, p.backoff_seconds, p.backoff_max_seconds, *keys.values()])
        if int(out[0]) == 0:
            raise BackingOff(float(out[1]), names[int(out[2]) - 1])
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in out[1:]]
        return {k: (values[2 * i], values[2 * i + 1]) for i, k in enumerate(names)}

    async def succeeded(self, charge: Charge, now: datetime) -> None:
        before, ours = charge.blocks[charge.source]
        await self.succeeded_script(keys=[self.prefix + charge.account, self.prefix + charge.source],
                                    args=[before, ours])

    async def aclose(self) -> None:
        await self.redis.aclose()


class LoginThrottle:
    def __init__(self, policy: Policy, database: DatabaseStore, redis: RedisStore | None = None) -> None:
        self.policy = policy
        self.database = database
        self.redis = redis

    async def attempt(self, username: str, source: str, now: datetime) -> Charge:
        """Count one sign-in attempt, or refuse it (429 problem) while its account or source is backing off."""
        account, src = account_key(username), source_key(source)
        keys = {account: self.policy.account_failures, src: self.policy.source_failures}
        store = self.redis or self.database
        try:
            try:
                blocks = await store.charge(keys, now)
            except BackingOff:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: count in the database, the back-off holds
                if store is self.database:
                    raise
                log.warning("sign-in back-off: Redis unavailable (%s); counted in the database", exc)
                store = self.database
                blocks = await store.charge(keys, now)
        except BackingOff as off:
            raise self._refused(off, username, source) from None
        self._note_backoff(blocks, account, username, source)
        return Charge(account, src, store, blocks)

    async def succeeded(self, charge: Charge, now: datetime) -> None:
        """The password was right: the account starts afresh, the source gets this attempt back."""
        try:
            await charge.store.succeeded(charge, now)
        except Exception as exc:  # noqa: BLE001 - a count left high only shortens the next back-off's wait
            log.warning("sign-in back-off: success not recorded (%s)", exc)

    async def unlock(self, username: str) -> None:
        """An administrator ends the account's back-off (and its count) at once, in Redis and the database."""
        key = account_key(username)
        if self.redis is not None:
            try:
                await self.redis.redis.delete(self.redis.prefix + key)
            except Exception as exc:  # noqa: BLE001 - the database's copy is cleared below all the same
                log.warning("sign-in back-off: Redis unavailable for an unlock (%s)", exc)
        async with self.database.db.session() as session, session.begin():
            await session.execute(delete(LoginCount).where(LoginCount.key == key))
        log.warning("sign-in back-off ended by an administrator", extra={
            "event": "auth.login_unlocked", "username": username[:64]})

    def _refused(self, off: BackingOff, username: str, source: str) -> Problem:
        seconds = max(1, math.ceil(off.retry_after))
        # the audit line of every refusal: who was tried, from where, which count refused, for how long
        log.warning("sign-in refused: backing off", extra={
            "event": "auth.login_backoff_refused", "username": username[:64], "source": source,
            "refused_by": off.key.split(":", 1)[0].split("#", 1)[0], "retry_after_s": seconds})
        return Problem(429, "too_many_attempts",
                       (f"登录失败次数过多，请 {seconds} 秒后再试", f"Too many failed sign-ins; retry in {seconds} s"),
                       headers={"Retry-After": str(seconds)}, extra={"error": "too_many_attempts"})

    def _note_backoff(self, blocks, account: str, username: str, source: str) -> None:
        for key, (before, ours) in blocks.items():
            if ours not in (None, "") and ours != before:
                log.warning("sign-in back-off begins", extra={
                    "event": "auth.login_backoff", "username": username[:64], "source": source,
                    "count": "account" if key == account else "source", "until": str(ours)})

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def build_login_throttle(settings, db: Database) -> LoginThrottle:
    policy = Policy(account_failures=settings.login_account_failures,
                    source_failures=settings.login_source_failures,
                    window_seconds=settings.login_window_seconds, backoff_seconds=settings.login_backoff_seconds,
                    backoff_max_seconds=settings.login_backoff_max_seconds)
    redis = (RedisStore(settings.redis_url, policy, prefix=settings.redis_prefix + "login:",
                        timeout=settings.redis_timeout_seconds) if settings.redis_url else None)
    return LoginThrottle(policy, DatabaseStore(db, policy), redis)
