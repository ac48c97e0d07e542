"""Forwarding to the services: pooled keep-alive connections (aiohttp), retries for idempotent methods only, a breaker per upstream.

The gateway checks the caller's token before forwarding (so a revoked member is stopped here at once), names
the calling member and the target service in headers (X-Road style), and turns an upstream that is down or
slow into a 503/504 problem.
"""
from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import math
import sys
import zlib
from urllib.parse import quote

if importlib.util.find_spec("sniffio") is None:  # pragma: no branch
    # httpcore tries `import sniffio` on every pool operation (several times per call) and falls back to
    # asyncio when it is missing; a failed import is not cached, so each try searches sys.path on disk. A None
    # entry makes the import fail at once, with the same outcome (asyncio). Profiled: ~10% of the hot path.
    sys.modules["sniffio"] = None  # type: ignore[assignment]

from collections.abc import AsyncIterator

import aiohttp
import httpx
from starlette.requests import Request
from starlette.responses import Response
from yarl import URL

from common.assertion import HEADER as ASSERTION_HEADER, HEADER_B as ASSERTION_B, AssertionAuth, GatewayAssertion
from common.auth import Principal, TokenCache, TokenVerifier, principal_from_claims, session_revoked
from common.context import request_id_var, traceparent_var
from common.errors import Problem
from common.http_client import CircuitBreaker, UpstreamTimeout, UpstreamUnavailable, child_traceparent
from gateway.exchange.policy import filter_body
from gateway.identity.mtls import PROXY_HEADERS, CertificatePins
from gateway.routing.streams import EVENT_STREAM_PATHS, UpstreamStream, is_event_stream, pass_on

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length",
}
# Headers the gateway sets itself on the way in (a caller must not be able to forge them) or on the way out.
GATEWAY_OWNED_IN = {"x-request-id", "traceparent", "tracestate", "x-onenet-client", "x-onenet-user",
                    "x-onenet-service", "x-forwarded-for", "x-onenet-resource", ASSERTION_HEADER, *PROXY_HEADERS}
_DROP_IN = frozenset(h.encode() for h in HOP_BY_HOP | GATEWAY_OWNED_IN)
STRIP_OUT = HOP_BY_HOP | {"x-request-id", "traceparent", "server", "date"}
_STRIP_OUT_B = frozenset(h.encode() for h in STRIP_OUT)
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
# A decoded request path goes upstream percent-encoded again (what httpx.URL(path=...) did).
_PATH_SAFE = "/!$&'()*+,;=:@~-._"


class StreamedBody:
    """A request body passed upstream as it arrives instead of read whole (file uploads, common.storage.uploads):
    hashed on the way for the message log; what went wrong reading it (the body limit crossed, the client gone)
    is kept, so the caller is told that rather than that the upstream failed."""

    def __init__(self, chunks: AsyncIterator[bytes], length: bytes | None) -> None:
        self._chunks = chunks
        self.length = length  # the caller's Content-Length, passed on so the upstream can refuse at once
        self._hash = hashlib.sha256()
        self.error: BaseException | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                if chunk:
                    self._hash.update(chunk)
                    yield chunk
        except Exception as exc:  # noqa: BLE001 - kept and re-raised by the forwarder as what it was
            self.error = exc
            raise

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Upstream:
    """One upstream service, reached through one aiohttp connector (its pool of keep-alive connections).

    aiohttp, not httpx's transport: measured on this code (issue 24), one forwarded call through httpcore's pool
    cost 1.1 ms of CPU alone and 2.1 ms at 16 concurrent calls (its pool re-checks every connection, with a
    poll() each, on every request and every close), against 0.3 and 0.2 ms through aiohttp's connector; with
    httpx the gateway without its edge did 0.03 × nginx. The session sends no default headers of its own (no
    `User-Agent`, `Accept`, `Accept-Encoding` or `Content-Type`: answers pass as the upstream sent them), keeps
    no cookies, follows no redirects and does not decompress (the raw bytes are read), none of which a gateway
    may do. At most 200 calls in flight to one upstream (more wait their turn within their deadline); an idle
    connection is closed after 3 s, below the services' own keep-alive timeout (uvicorn's 5 s), so the gateway
    does not reuse one the upstream is closing. One attempt per `send`, each step (a pool slot and connect, each
    read) bounded by the timeout; the forwarder retries idempotent calls only.

    Tests inject an httpx transport (`httpx.MockTransport`, `httpx.ASGITransport`): `send` then goes through it
    (the served tests, tests/gateway/test_served.py, run the connector). The gateway's own occasional calls
    (OpenAPI documents) take `client`, an httpx client.
    """

    def __init__(self, name: str, base_url: str, *, timeout: float, retries: int, breaker: CircuitBreaker,
                 transport: httpx.AsyncBaseTransport | None = None, assertion: GatewayAssertion | None = None,
                 stream_read: float = 45.0, upload_read: float = 60.0) -> None:
        self.name = name
        # the gateway's assertion on every call to this upstream (ADR 0013); `auth` signs the gateway's own calls
        self.assertion = assertion
        self.auth = AssertionAuth(assertion) if assertion is not None else None
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.breaker = breaker
        self.injected = transport is not None
        self.transport = transport
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=2.0),
                                        transport=transport)
        self._url = httpx.URL(self.base_url)
        self._origin = f"{self._url.scheme}://{self._url.netloc.decode('ascii')}"
        self._prefix = self._url.raw_path.rstrip(b"/")
        connect = min(2.0, timeout)
        self._timeouts = {"connect": connect, "read": timeout, "write": timeout, "pool": timeout}
        self._stream_timeouts = {**self._timeouts, "read": stream_read}
        self._upload_timeouts = {**self._timeouts, "read": upload_read}
        self._client_timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=connect,
                                                     sock_read=timeout)
        # an event stream's route (streams.py): each read may wait past the stream's heartbeat
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=connect,
                                                     sock_read=stream_read)
        # a file upload (StreamedBody): the service examines and stores the file after its last byte
        self._upload_timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=connect, sock_read=upload_read)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # made on first use, on the loop that serves the calls
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, limit_per_host=200, keepalive_timeout=3.0),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, timeout=self._client_timeout,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))
        return self._session

    async def send(self, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                   body: bytes | StreamedBody) -> tuple[int, list[tuple[bytes, bytes]], bytes | UpstreamStream]:
        """One attempt: (status, raw response headers, body as sent, or an event stream's as it arrives); raises
        UpstreamTimeout / UpstreamUnavailable (or, for a streamed body, what went wrong reading it)."""
        target = self._prefix + quote(path, safe=_PATH_SAFE).encode("ascii")  # the decoded path, encoded again
        if query:
            target += b"?" + query
        stream = path in EVENT_STREAM_PATHS
        try:
            if self.injected:
                return await self._send_injected(method, target, headers, body, stream)
            return await self._send(method, target, headers, body, stream)
        except (UpstreamTimeout, UpstreamUnavailable):
            if isinstance(body, StreamedBody) and body.error is not None:
                raise body.error from None  # the caller's body, not the upstream, failed (e.g. too large)
            raise

    async def _send(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                    body: bytes | StreamedBody, stream: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes | UpstreamStream]:
        session = self._session or self._open()
        try:
            resp = await session.request(
                method, URL(self._origin + target.decode("ascii"), encoded=True),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=(body.__aiter__() if isinstance(body, StreamedBody) else body or None),
                allow_redirects=False, timeout=self._stream_timeout if stream else (
                    self._upload_timeout if isinstance(body, StreamedBody) else self._client_timeout))
            raw = list(resp.raw_headers)
            if is_event_stream(resp.status, raw):
                return resp.status, raw, UpstreamStream.of_aiohttp(resp)
            try:
                return resp.status, raw, await resp.read()
            finally:
                resp.release()
        except TimeoutError as exc:  # aiohttp's own timeouts (ServerTimeoutError) are TimeoutErrors too
            raise UpstreamTimeout(self.name) from exc
        except (aiohttp.ClientError, OSError) as exc:  # refused, reset, closed before answering, not HTTP
            raise UpstreamUnavailable(self.name) from exc

    async def _send_injected(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
                             body: bytes | StreamedBody, stream: bool
                             ) -> tuple[int, list[tuple[bytes, bytes]], bytes | UpstreamStream]:
        content = body.__aiter__() if isinstance(body, StreamedBody) else body
        request = httpx.Request(method, self._url.copy_with(raw_path=target), headers=headers, content=content,
                                extensions={"timeout": self._stream_timeouts if stream else (
                                    self._upload_timeouts if isinstance(body, StreamedBody) else self._timeouts)})
        try:
            resp = await self.transport.handle_async_request(request)
            if is_event_stream(resp.status_code, resp.headers.raw) and not resp.is_stream_consumed:
                return resp.status_code, resp.headers.raw, UpstreamStream(resp.aiter_raw(), resp.aclose)
            if resp.is_stream_consumed:  # a test's transport that read it already (httpx.MockTransport)
                content = resp.content
            else:
                try:
                    content = b"".join([chunk async for chunk in resp.aiter_raw()])
                finally:
                    await resp.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise UpstreamTimeout(self.name) from exc
        except (httpx.TransportError, OSError) as exc:
            raise UpstreamUnavailable(self.name) from exc
        return resp.status_code, resp.headers.raw, content

    def use(self, transport: httpx.AsyncBaseTransport) -> None:
        """Forward through another transport from now on (tests)."""
        self.transport = self.client._transport = transport  # noqa: SLF001 - the client's own, for its calls too
        self.injected = True

    async def aclose(self) -> None:
        await self.client.aclose()  # closes its transport
        if self.transport is not None:
            await self.transport.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class Forwarder:
    def __init__(self, upstreams: dict[str, Upstream], verifier: TokenVerifier, revoked_members: set[str],
                 *, token_cache: TokenCache | None = None, pins: CertificatePins | None = None) -> None:
        self.upstreams = upstreams
        self.verifier = verifier
        self.revoked = revoked_members
        self.revoked_sessions = ()  # gateway/accounts: the live set of signed-out sessions (set by the app)
        self.pins = pins if pins is not None else CertificatePins()
        self.tokens = token_cache if token_cache is not None else TokenCache()

    async def authenticate(self, request: Request) -> Principal:
        auth = request.headers.get("authorization")
        path = request.url.path
        if not auth and request.method == "GET" and (path == "/metrics/v1/dashboard" or path.startswith(
                ("/metrics/v1/dashboard/", "/metrics/v1/report"))):
            # svc_metrics' HTML pages in a browser, which cannot send a bearer header on a page load: the token
            # from the pages' own HttpOnly cookie, for GET only. Without the cookie the page is fetched as an
            # anonymous visitor and svc_metrics (which checks every token itself) answers with its sign-in form.
            cookie = request.cookies.get("onenet_metrics_token")
            if not cookie:
                principal = Principal(member="anonymous", user="browser", role="anonymous")
                request.state.caller = principal.caller
                return principal
            auth = f"Bearer {cookie}"
        principal = await self.principal_for(auth)
        if self.pins.pins:  # a member with a client certificate on file must present it (mutual TLS)
            self.pins.check(principal.member, request.scope)
        request.state.caller = principal.caller
        return principal

    async def principal_for(self, auth: str | None) -> Principal:
        """The caller behind an Authorization header: a bearer token verified once (then cached), of a member
        that is not revoked."""
        if not auth or not auth[:7].lower() == "bearer ":
            raise Problem(401, "unauthenticated", ("请求缺少访问令牌（Authorization: Bearer …）",
                                                   "Missing bearer token (Authorization: Bearer …)"),
                          headers={"WWW-Authenticate": "Bearer"})
        token = auth[7:].strip()
        principal = self.tokens.get(token)
        if principal is None:
            principal = principal_from_claims(await self.verifier.verify(token), token)
            self.tokens.put(token, principal, principal.claims.get("exp"))
        if principal.member in self.revoked:
            raise Problem(403, "member_revoked", ("该成员单位已被停用", "This member has been revoked"))
        if not self.holds(principal):
            raise session_revoked()  # a signed-out session (gateway/accounts/sessions.py), at once
        return principal

    def holds(self, principal: Principal) -> bool:
        """The caller's member and session are not revoked (checked again before each chunk of a stream)."""
        return principal.member not in self.revoked and not (
            self.revoked_sessions and principal.claims.get("sid") in self.revoked_sessions)

    async def forward(self, service: str, principal: Principal, *, method: str, path: str, query: bytes,
                      headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None,
                      body: bytes | StreamedBody, actions: tuple = (),
                      extra_headers: list[tuple[str, str]] | None = None) -> Response:
        """Send the call upstream with the gateway's headers and assertion; `actions` (from the caller's grant) mask
        or remove response fields. Idempotent calls (and a POST with an Idempotency-Key) are retried; a streamed
        body (a file upload) goes once, as it arrives, never held whole."""
        upstream = self.upstreams[service]
        if not upstream.breaker.allow():
            raise unavailable_problem(service, _retry_after(upstream.breaker))
        idempotent = method in IDEMPOTENT
        out = []
        authorization = None
        for k, v in headers:
            if k not in _DROP_IN:
                out.append((k, v))
                if k == b"idempotency-key" and method == "POST":
                    idempotent = True
                elif k == b"authorization" and authorization is None:
                    authorization = v
        rid = (request_id_var.get() or "").encode("latin-1")
        if upstream.assertion is not None:  # after every check of the gateway's: the call may go on
            out.append((ASSERTION_B, upstream.assertion.sign(method, path.encode(), query, authorization, rid)))
        out += [
            (b"x-request-id", rid),
            (b"traceparent", child_traceparent(traceparent_var.get()).encode("latin-1")),
            (b"x-onenet-client", principal.member.encode()),
            (b"x-onenet-user", principal.user.encode()),
            (b"x-onenet-service", service.encode()),
            (b"x-forwarded-for", (client[0] if client else "").encode()),
        ]
        if extra_headers:
            out += [(k.encode("latin-1"), v.encode()) for k, v in extra_headers]
        if isinstance(body, StreamedBody):  # read once: nothing to send again
            idempotent = False
            if body.length is not None:
                out.append((b"content-length", body.length))
        attempts = 1 + (upstream.retries if idempotent else 0)
        last_exc: Exception | None = None
        for attempt in range(attempts):
            try:
                status, raw, content = await upstream.send(method, path, query, out, body)
            except (UpstreamTimeout, UpstreamUnavailable) as exc:
                upstream.breaker.record_failure()
                last_exc = exc
            else:
                if status >= 500:
                    upstream.breaker.record_failure()
                    if idempotent and status in (502, 503, 504) and attempt + 1 < attempts:
                        await asyncio.sleep(0.05 * (attempt + 1))
                        continue
                else:
                    upstream.breaker.record_success()
                if isinstance(content, UpstreamStream):  # passed on as it arrives while the caller may read it
                    headers = _headers_out(raw) + [(b"x-onenet-service", service.encode())]
                    return await pass_on(content, status, headers, actions=actions,
                                         principal=principal, token_clock=self.verifier.clock, holds=self.holds)
                return _response(service, status, raw, content, actions)
            if attempt + 1 < attempts:
                await asyncio.sleep(0.05 * (attempt + 1))
        if isinstance(last_exc, UpstreamTimeout):
            raise timed_out_problem(service)
        raise unavailable_problem(service)

    async def aclose(self) -> None:
        for u in self.upstreams.values():
            await u.aclose()


def local_path(scope) -> str:
    """The request's path below the gateway's root path (uvicorn's scope["path"] includes --root-path): what
    the catalogue's prefixes and the upstream services know."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _headers_out(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's answer headers less the hop-by-hop ones and the gateway's own."""
    return [(lk, v) for k, v in raw if (lk := k.lower()) not in _STRIP_OUT_B and lk != b"x-onenet-service"]


def _response(service: str, status: int, raw: list[tuple[bytes, bytes]], content: bytes, actions: tuple) -> Response:
    """The upstream's answer with the gateway's own headers; the body is parsed only when masking applies."""
    out = _headers_out(raw)
    content_type = ""
    encoding = None
    for lk, v in out:
        if lk == b"content-type":
            content_type = v.decode("latin-1")
        elif lk == b"content-encoding":
            encoding = v
    if actions and status < 300 and content:
        if encoding is not None:  # to mask we must read it: decode, and send the masked body uncompressed
            content = _decoded(content, encoding)
            out = [(k, v) for k, v in out if k != b"content-encoding"]
        content = filter_body(content, content_type, actions)
    resp = Response(content, status_code=status)
    resp.raw_headers = out + [(b"content-length", str(len(content)).encode()),
                              (b"x-onenet-service", service.encode())]
    return resp


def _decoded(content: bytes, encoding: bytes) -> bytes:
    enc = encoding.strip().lower()
    try:
        if enc in (b"gzip", b"x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if enc == b"deflate":
            try:
                return zlib.decompress(content)
            except zlib.error:
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error:
        return b""
    return b""  # an encoding we cannot read: the body cannot be checked, so it is not passed on


def _retry_after(breaker: CircuitBreaker) -> int:
    """Seconds until an open breaker lets a trial call through (at least 1)."""
    if breaker.opened_at is None:
        return 5
    return max(1, math.ceil(breaker.reset_timeout - (breaker.clock() - breaker.opened_at)))


def timed_out_problem(service: str) -> Problem:
    return Problem(504, "upstream_timeout", (f"服务 {service} 响应超时，请稍后重试",
                                             f"The {service} service timed out; retry later"))


def unavailable_problem(service: str, retry_after: int = 5) -> Problem:
    return Problem(503, "upstream_unavailable", (f"服务 {service} 暂不可用，请稍后重试",
                                                 f"The {service} service is unavailable; retry later"),
                   headers={"Retry-After": str(retry_after)})
