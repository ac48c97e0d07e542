"""The gateway's assertion on a call it forwards, and the check every service makes of it (ADR 0013).

A service answers only calls that passed the gateway's checks (token, revocation, grant, rate limit, message
log). The gateway (its Python forwarder and its nginx edge) adds, after those checks,

    X-OneNet-Assertion: v1.<unix seconds>.<hex HMAC-SHA256(key, message)>

where the message is the call's own parts, one per line:

    method \\n path \\n query \\n Authorization \\n seconds \\n X-Request-Id

`path` is the decoded path as UTF-8 bytes (what `unquote_to_bytes` gives of the path sent), `query` the raw query
string, `Authorization` the header's value as sent (empty when there is none): an assertion is worth nothing
for another method, path, query or token. Only the path can hold a line break (a decoded `%0A`); every other
part cannot, so the message reads back one way only. The key is the upstream's own (the gateway holds every
service's; a service only its own, plus the keys of the services its outbox delivers to directly).

A service takes an assertion that verifies and whose time is within `MAX_SKEW_SECONDS` of its own clock (both
ways: the clocks of two machines). The clock is real time (`common.clock.Clock`), as token lifetimes are: the
assertion crosses processes, and the edge stamps it with nginx's clock. There is no replay cache: the gateway
and nginx resend the same headers when they retry an idempotent call, and an assertion never reaches a client.
"""
from __future__ import annotations

import hmac
from collections.abc import Generator
from urllib.parse import unquote_to_bytes

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from common.clock import Clock
from common.errors import problem_response
from common.i18n import negotiate_language

HEADER = "x-onenet-assertion"
HEADER_B = HEADER.encode()
VERSION = b"v1"
MAX_SKEW_SECONDS = 30
# Outside the check: what probes and the scraper call on every process (docs/adr/0013).
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

REFUSED = {
    "missing": ("此服务只接受经网关转发的调用，请通过网关访问",
                "This service answers only calls forwarded by the gateway; call it through the gateway"),
    "invalid": ("网关转发凭证无效，请通过网关访问",
                "The gateway's assertion on this call is not valid; call it through the gateway"),
    "stale": ("网关转发凭证已过期，请通过网关重新发起调用",
              "The gateway's assertion on this call is too old or too new; call it through the gateway again"),
    "unconfigured": ("此服务未配置网关转发密钥，暂不受理调用",
                     "This service has no gateway assertion key configured; it takes no calls"),
}


class GatewayAssertion:
    """Signs with one key (a token_urlsafe string, used as its ASCII bytes) and checks with it, or with the
    `previous` one while a rotation goes on (deploy/README.md)."""

    def __init__(self, key: str, *, previous: str | None = None, clock: Clock | None = None,
                 max_skew: float = MAX_SKEW_SECONDS) -> None:
        if not key:
            raise ValueError("an assertion key must not be empty")
        self._key = key.encode("ascii")
        self._previous = previous.encode("ascii") if previous else None
        self.clock = clock or Clock()
        self.max_skew = max_skew

    def _mac(self, method: bytes, path: bytes, query: bytes, authorization: bytes, ts: bytes,
             request_id: bytes, key: bytes | None = None) -> bytes:
        message = b"\n".join((method, path, query, authorization, ts, request_id))
        return hmac.digest(key or self._key, message, "sha256").hex().encode("ascii")

    def sign(self, method: str, path: bytes, query: bytes, authorization: bytes | None,
             request_id: bytes | None, *, at: int | None = None) -> bytes:
        """The header value for one call; `path` the decoded path's bytes, `at` seconds (now by default)."""
        ts = str(int(self.clock.timestamp()) if at is None else at).encode()
        mac = self._mac(method.encode("ascii"), path, query, authorization or b"", ts, request_id or b"")
        return VERSION + b"." + ts + b"." + mac

    def refusal(self, method: str, path: bytes, query: bytes, headers) -> str | None:
        """Why a call is refused ("missing", "invalid", "stale"), or None when its assertion holds."""
        value = authorization = request_id = None
        for k, v in headers:
            if k == HEADER_B:
                value = value or v
            elif k == b"authorization":
                authorization = v if authorization is None else authorization
            elif k == b"x-request-id":
                request_id = v if request_id is None else request_id
        if not value:
            return "missing"
        version, _, rest = value.partition(b".")
        ts, _, mac = rest.partition(b".")
        if version != VERSION or not ts.isdigit() or len(ts) > 12 or not mac:
            return "invalid"
        parts = (method.encode("ascii"), path, query, authorization or b"", ts, request_id or b"")
        if not hmac.compare_digest(mac, self._mac(*parts)) and not (
                self._previous and hmac.compare_digest(mac, self._mac(*parts, key=self._previous))):
            return "invalid"
        if abs(self.clock.timestamp() - int(ts)) > self.max_skew:
            return "stale"
        return None


def scope_path(scope: Scope) -> bytes:
    """The decoded path's bytes as the gateway signed them: from the raw path the service received."""
    raw = scope.get("raw_path")
    if raw is None:
        return scope.get("path", "").encode("utf-8")
    raw = raw.split(b"?", 1)[0]
    return unquote_to_bytes(raw) if b"%" in raw else raw


def refusal_response(reason: str, accept_language: str | None, instance: str):
    return problem_response(401, "not_through_gateway", lang=negotiate_language(accept_language),
                            detail=REFUSED[reason], instance=instance,
                            title=("仅受理经网关转发的调用", "Only calls through the gateway"))


def scope_refusal(scope: Scope) -> str | None:
    """Why the app refuses this call (see `GatewayAssertion.refusal`; "unconfigured" without a key), or None."""
    check: GatewayAssertion | None = scope["app"].state.gateway_assertion
    if check is None:
        return "unconfigured"
    return check.refusal(scope["method"], scope_path(scope), scope.get("query_string", b""), scope["headers"])


class GatewayOnly:
    """ASGI middleware: every call but the ops endpoints must carry a valid assertion (the app's
    `state.gateway_assertion`); without a key configured every such call is refused, so a service never answers
    unguarded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPS_PATHS:
            reason = scope_refusal(scope)
            if reason is not None:
                language = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept-language"), None)
                await refusal_response(reason, language, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AssertionAuth(httpx.Auth):
    """httpx auth that signs each request as the gateway would: for calls made straight to a service that are
    not forwarded by the gateway (outbox relays to their subscriber, the gateway's own document fetches,
    tests)."""

    def __init__(self, assertion: GatewayAssertion) -> None:
        self.assertion = assertion

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raw = request.url.raw_path.split(b"?", 1)[0]
        path = unquote_to_bytes(raw) if b"%" in raw else raw
        request.headers[HEADER] = self.assertion.sign(
            request.method, path, request.url.query, _header(request, "authorization"),
            _header(request, "x-request-id")).decode("ascii")
        yield request


def _header(request: httpx.Request, name: str) -> bytes | None:
    value = request.headers.get(name)
    return value.encode("latin-1") if value is not None else None


def auth_for(key: str | None, clock: Clock | None = None) -> AssertionAuth | None:
    return AssertionAuth(GatewayAssertion(key, clock=clock)) if key else None
