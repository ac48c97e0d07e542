"""Bearer-token verification against the gateway's JWKS, and the `Principal` every endpoint works with."""
from __future__ import annotations

import asyncio
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx
import jwt
from fastapi import Depends, Request

from common.clock import Clock
from common.context import bearer_token_var
from common.errors import Problem
from common.settings import ServiceSettings

ROLES = (
    "resident", "proxy", "grid_worker", "community_staff", "street_staff", "dept_staff",
    "provider", "evaluator", "ops", "system",
)
STAFF_ROLES = ("grid_worker", "community_staff", "street_staff", "dept_staff", "ops")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the member system, the user, their role, the places/departments they may act in."""

    member: str
    user: str
    role: str
    scopes: tuple[str, ...] = ()
    acting_for: str | None = None
    token: str | None = field(default=None, repr=False)
    claims: dict[str, Any] = field(default_factory=dict, repr=False)

    def scope_values(self, kind: str) -> list[str]:
        return list(self._scopes_by_kind.get(kind, ()))

    @cached_property
    def _scopes_by_kind(self) -> dict[str, list[str]]:
        # split once per principal: checks ask for the same kinds many times per request (profiled on intake)
        out: dict[str, list[str]] = {}
        for s in self.scopes:
            kind, sep, value = s.partition(":")
            if sep:
                out.setdefault(kind, []).append(value)
        return out

    @property
    def person_id(self) -> str | None:
        """The person a resident is, or the person a proxy acts for."""
        if self.role == "proxy":
            return self.acting_for
        values = self.scope_values("person")
        return values[0] if values else None

    def covers_place(self, code: str | None) -> bool:
        """True when a place code (district 6 / street 9 / community 12 / grid 15 digits …) lies in scope.

        Place codes nest by prefix, so a community staff scope `community:110101001001` covers every grid and
        building code that starts with it.
        """
        if code is None:
            return False
        if self.role in ("ops", "system"):
            return True
        for kind in ("district", "street", "community", "grid"):
            for value in self.scope_values(kind):
                if code.startswith(value):
                    return True
        return False

    @property
    def caller(self) -> str:
        return f"{self.member}/{self.user}"


class TokenCache:
    """Verified tokens → what they were verified to (claims, a principal), bounded (least recently used dropped
    first) and each entry dropped at the token's own expiry (`exp`, seconds since the epoch, on `now`).

    Checking an RS256 signature (and PyJWT's parsing around it) is the largest single cost of a request; a caller
    sends the same token for its whole lifetime, so the result is kept. Only tokens that verified are put (a
    forged one costs a verification every time); revocation is never cached, it is checked on every call. The
    one cache of the platform: the services' `TokenVerifier` and the gateway's forwarder use it."""

    def __init__(self, max_entries: int = 10_000, now: Callable[[], float] = time.time) -> None:
        self.max = max_entries
        self.now = now
        self._entries: OrderedDict[str, tuple[Any, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> Any | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        value, exp = hit
        if self.now() >= exp:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return value

    def put(self, token: str, value: Any, exp: Any) -> None:
        """Keep `value` for `token` until `exp` (nothing kept without a numeric `exp`, or with no room at all)."""
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or self.max <= 0:
            return
        self._entries[token] = (value, float(exp))
        self._entries.move_to_end(token)
        while len(self._entries) > self.max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class TokenVerifier:
    """Verifies RS256 tokens; keys come from a JWKS file or URL, refetched when an unknown kid appears.

    Verified tokens are remembered in a `TokenCache` until their own expiry; the memory is dropped whenever the
    key set is (re)loaded, so a key withdrawn from the JWKS stops its tokens at the next load.
    """

    REFRESH_MIN_INTERVAL = 10.0
    CACHE_MAX_ENTRIES = 10_000

    LEEWAY_SECONDS = 5

    def __init__(self, settings: ServiceSettings, *, jwks: dict | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock()  # token lifetimes are real time (common/clock.py)
        self._keys: dict[str, Any] = {}
        self._verified = TokenCache(self.CACHE_MAX_ENTRIES, now=lambda: self.clock.timestamp())
        self._last_fetch = 0.0
        self._lock = asyncio.Lock()
        self._transport = transport
        if jwks is not None:
            self._load(jwks)
        elif settings.jwks_file and settings.jwks_file.exists():
            self._load(json.loads(settings.jwks_file.read_text()))

    def _load(self, document: dict) -> None:
        keys = {}
        for jwk in document.get("keys", []):
            keys[jwk["kid"]] = jwt.PyJWK(jwk).key
        self._keys = keys
        self._verified.clear()

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._last_fetch < self.REFRESH_MIN_INTERVAL:
                return
            self._last_fetch = time.monotonic()
            if self.settings.jwks_file and self.settings.jwks_file.exists():
                self._load(json.loads(self.settings.jwks_file.read_text()))
                return
            if not self.settings.jwks_url:
                return
            try:
                async with httpx.AsyncClient(timeout=3.0, transport=self._transport) as client:
                    resp = await client.get(self.settings.jwks_url)
                    resp.raise_for_status()
                    self._load(resp.json())
            except (httpx.HTTPError, ValueError):
                pass  # keep the keys we have; the token will be refused if none match

    async def verify(self, token: str) -> dict[str, Any]:
        hit = self._verified.get(token)
        if hit is not None:
            return hit
        claims = await self._verify(token)
        self._verified.put(token, claims, claims.get("exp"))
        return claims

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _invalid("令牌格式不正确", "Malformed token") from exc
        kid = header.get("kid")
        if kid not in self._keys:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise _invalid("令牌签名密钥未知", "Unknown signing key")
        try:
            # PyJWT would read the wall itself: the times are checked below against the verifier's clock
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=self.settings.jwt_audience,
                                issuer=self.settings.jwt_issuer, options={
                                    "require": ["exp", "iat", "sub"], "verify_exp": False, "verify_nbf": False,
                                    "verify_iat": False})
        except jwt.InvalidTokenError as exc:
            raise _invalid("令牌无效", "Invalid token") from exc
        # what PyJWT checks of the times, on this verifier's clock: each a finite number (not a bool, not NaN),
        # `exp` not passed, `nbf` and `iat` not ahead (with the leeway)
        now = self.clock.timestamp()
        times = {name: claims[name] for name in ("exp", "iat", "nbf") if name in claims}
        if any(not _finite_number(v) for v in times.values()):
            raise _invalid("令牌无效", "Invalid token")
        if times["exp"] <= now - self.LEEWAY_SECONDS:
            raise _invalid("令牌已过期，请重新获取", "Token expired")
        if times["iat"] > now + self.LEEWAY_SECONDS or times.get("nbf", now) > now + self.LEEWAY_SECONDS:
            raise _invalid("令牌尚未生效", "Token not yet valid")
        return claims


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _invalid(zh: str, en: str) -> Problem:
    return Problem(401, "invalid_token", (zh, en), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def principal_from_claims(claims: dict[str, Any], token: str | None = None) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise _invalid("令牌中的角色无效", "Unknown role in token")
    return Principal(
        member=str(claims.get("member") or claims.get("azp") or "unknown"),
        user=str(claims["sub"]),
        role=role,
        scopes=tuple(claims.get("scopes") or ()),
        acting_for=claims.get("acting_for"),
        token=token,
        claims=claims,
    )


async def get_principal(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    auth = request.headers.get("authorization")
    if not auth or not auth.lower().startswith("bearer "):
        raise Problem(401, "unauthenticated", ("请求缺少访问令牌（Authorization: Bearer …）",
                                               "Missing bearer token (Authorization: Bearer …)"),
                      headers={"WWW-Authenticate": "Bearer"})
    token = auth[7:].strip()
    verifier: TokenVerifier = request.app.state.verifier
    claims = await verifier.verify(token)
    principal = principal_from_claims(claims, token)
    # The gateway keeps the live set of revoked members: its own endpoints refuse them as forwarding does.
    revoked = getattr(request.app.state, "revoked_members", None)
    if revoked and principal.member in revoked:
        raise Problem(403, "member_revoked", ("该成员单位已被停用", "This member has been revoked"))
    # and the live set of signed-out sessions (gateway/accounts/sessions.py): refused at once
    sessions = getattr(request.app.state, "revoked_sessions", None)
    if sessions and principal.claims.get("sid") in sessions:
        raise session_revoked()
    request.state.principal = principal
    request.state.caller = principal.caller
    bearer_token_var.set(token)
    return principal


def session_revoked() -> Problem:
    return Problem(401, "session_revoked", ("该登录会话已注销，请重新登录", "This session was signed out; sign in again"),
                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def require_roles(*roles: str):
    """Dependency: the caller must hold one of `roles`."""

    async def _check(principal: Principal = Depends(get_principal)) -> Principal:
        if principal.role not in roles:
            raise Problem(403, "forbidden", (f"当前角色（{principal.role}）无权执行此操作",
                                             f"Role {principal.role} may not do this"))
        return principal

    return _check


class ServiceTokenProvider:
    """Client-credentials token for a service's own calls (outbox relay, schedulers), cached until near expiry."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._transport = transport

    async def __call__(self) -> str:
        if self._token and time.monotonic() < self._expires - 30:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._expires - 30:
                return self._token
            async with httpx.AsyncClient(timeout=5.0, transport=self._transport) as client:
                resp = await client.post(self.token_url, data={
                    "grant_type": "client_credentials", "client_id": self.client_id,
                    "client_secret": self.client_secret})
                resp.raise_for_status()
                body = resp.json()
            self._token = body["access_token"]
            self._expires = time.monotonic() + float(body.get("expires_in", 300))
            return self._token
