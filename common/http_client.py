"""The pooled inter-service HTTP client: timeouts, retries for idempotent calls only, a circuit breaker per
upstream, and propagation of the request id, the W3C trace context and the caller's bearer token."""
from __future__ import annotations

import asyncio
import random
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from common.context import bearer_token_var, request_id_var, traceparent_var

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
IDEMPOTENT_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
RETRY_STATUSES = {502, 503, 504}


def new_request_id() -> str:
    return uuid.uuid4().hex


# Trace and span ids must be unique and unpredictable enough to not collide, not secret: a generator seeded once
# from the OS, instead of a getrandom() system call for each id (three per forwarded call; profiled: costly
# where system calls are, such as sandboxed containers).
_span_ids = random.Random(secrets.randbits(128))


def _span_id() -> str:
    return f"{_span_ids.getrandbits(64) or 1:016x}"  # all zeros is invalid (W3C Trace Context)


def child_traceparent(parent: str | None) -> str:
    """A new span in the caller's trace (same trace id, new parent id), or a new trace if none/invalid."""
    if parent:
        m = _TRACEPARENT.match(parent.strip().lower())
        if m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16:
            return f"00-{m.group(1)}-{_span_id()}-{m.group(3)}"
    return f"00-{_span_ids.getrandbits(128) or 1:032x}-{_span_id()}-01"


_tls: ssl.SSLContext | None = None
_tls_lock = threading.Lock()


def default_tls() -> ssl.SSLContext:
    """One verifying TLS context per process for every ServiceClient: httpx would load the CA bundle into a context
    of each client's own (about 25 ms of CPU), and an app makes about ten clients as it starts. Contexts are safe
    to share between connections and threads."""
    global _tls
    with _tls_lock:
        if _tls is None:
            _tls = httpx.create_ssl_context()
        return _tls


class UpstreamError(Exception):
    def __init__(self, upstream: str, message: str = "") -> None:
        super().__init__(message or upstream)
        self.upstream = upstream


class UpstreamUnavailable(UpstreamError):
    """Connection refused, breaker open, or 5xx after retries: callers answer 503."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time: callers answer 504."""


class CircuitBreaker:
    """closed → open after `failure_threshold` consecutive failures → half-open after `reset_timeout`
    (one trial call) → closed on success, open again on failure."""

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_timeout else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            self.opened_at = self.clock()


class ServiceClient:
    def __init__(self, name: str, base_url: str, *, timeout: float = 5.0, retries: int = 2, backoff: float = 0.05,
                 breaker: CircuitBreaker | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 token_provider: Callable[[], Awaitable[str]] | None = None) -> None:
        self.name = name
        self.retries = retries
        self.backoff = backoff
        self.breaker = breaker or CircuitBreaker()
        self.token_provider = token_provider
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)), transport=transport,
            verify=default_tls(),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))

    async def _headers(self, extra: dict[str, str] | None, forward_caller_token: bool) -> dict[str, str]:
        headers = {
            "X-Request-Id": request_id_var.get() or new_request_id(),
            "traceparent": child_traceparent(traceparent_var.get()),
        }
        token = bearer_token_var.get() if forward_caller_token else None
        if token is None and self.token_provider is not None:
            token = await self.token_provider()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if extra:
            headers.update(extra)
        return headers

    async def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                      headers: dict[str, str] | None = None, idempotent: bool | None = None,
                      forward_caller_token: bool = True) -> httpx.Response:
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS or any(
                k.lower() == "idempotency-key" for k in (headers or {}))
        attempts = 1 + (self.retries if idempotent else 0)
        hdrs = await self._headers(headers, forward_caller_token)
        last_exc: Exception | None = None
        for attempt in range(attempts):
            if not self.breaker.allow():
                raise UpstreamUnavailable(self.name, f"{self.name}: circuit open")
            try:
                resp = await self._client.request(method, path, json=json, params=params, headers=hdrs)
            except httpx.TimeoutException as exc:
                self.breaker.record_failure()
                last_exc = exc
            except httpx.TransportError as exc:
                self.breaker.record_failure()
                last_exc = exc
            else:
                if resp.status_code >= 500:
                    self.breaker.record_failure()
                    if resp.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                        await self._sleep(attempt)
                        continue
                    return resp
                self.breaker.record_success()
                return resp
            if attempt + 1 < attempts:
                await self._sleep(attempt)
        if isinstance(last_exc, httpx.TimeoutException):
            raise UpstreamTimeout(self.name, f"{self.name}: timed out") from last_exc
        raise UpstreamUnavailable(self.name, f"{self.name}: {type(last_exc).__name__}") from last_exc

    async def _sleep(self, attempt: int) -> None:
        if self.backoff:
            await asyncio.sleep(self.backoff * 2 ** attempt * (1 + random.random() * 0.25))

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> "ServiceClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
