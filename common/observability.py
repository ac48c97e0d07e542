"""Request ids, W3C trace context, access logs, Prometheus metrics, body limits and content-type checks.

Written as plain ASGI middleware (not BaseHTTPMiddleware) so it adds little to every request and keeps
context variables visible to the endpoint.
"""
from __future__ import annotations

import hmac
import logging
import random
import re
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.context import request_id_var, traceparent_var
from common.errors import BodyTooLarge, Problem, internal_error_response, problem_response, too_large_response
from common.http_client import child_traceparent
from common.i18n import negotiate_language
from common.openapi_contract import open311_refusal
from common.logging import direct_handler

access_log = logging.getLogger("onenet.access")

HTTP_REQUESTS = Counter("onenet_http_requests_total", "HTTP requests handled",
                        ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("onenet_http_request_duration_seconds", "HTTP request latency",
                         ["service", "method", "route"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
HTTP_IN_FLIGHT = Gauge("onenet_http_requests_in_flight", "HTTP requests in flight", ["service"])

_random = random.Random()
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}
# The route label of a request no route matched (404s, redirects, refusals ahead of routing): one label, so
# made-up paths cannot grow the label set without bound.
UNMATCHED_ROUTE = "unmatched"


def check_metrics_token(expected: str | None, authorization: str | None) -> None:
    """/metrics is for the scraper: the bearer token it was given (ONENET_METRICS_TOKEN), compared in constant
    time. Without a token configured nobody reads the metrics (they name routes, callers' volumes, backlogs)."""
    if not expected:
        raise Problem(403, "metrics.disabled", ("未配置指标令牌（ONENET_METRICS_TOKEN），不提供指标",
                                                "No metrics token is configured (ONENET_METRICS_TOKEN): no metrics"))
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Problem(401, "metrics.unauthenticated", ("读取指标需要指标令牌", "Reading metrics needs the metrics token"),
                      headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


def _new_request_id() -> str:
    # Same shape as new_request_id() (32 hex digits) without a getrandom() system call per request: a request
    # id correlates log lines, it is not a secret (profiled: ~3% of a forwarded call).
    return f"{_random.getrandbits(128):032x}"


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def scan_headers(headers) -> tuple[str | None, str | None, str | None, str | None, str | None, bool]:
    """One pass over raw request headers for what the observability layer looks at: X-Request-Id, traceparent,
    Accept-Language, Content-Length, Content-Type (the first of each), and whether the body is chunked."""
    incoming = traceparent = accept_language = length = content_type = None
    chunked = False
    for k, v in headers:
        if k == b"x-request-id":
            incoming = incoming or v.decode("latin-1")
        elif k == b"traceparent":
            traceparent = traceparent or v.decode("latin-1")
        elif k == b"accept-language":
            accept_language = accept_language or v.decode("latin-1")
        elif k == b"content-length":
            length = length or v.decode("latin-1")
        elif k == b"content-type":
            content_type = content_type or v.decode("latin-1")
        elif k == b"transfer-encoding":
            chunked = True
    return incoming, traceparent, accept_language, length, content_type, chunked


def request_ids(incoming: str | None, traceparent: str | None) -> tuple[str, str]:
    """This request's id (the caller's, when it is safe to echo) and its traceparent (a child of the caller's)."""
    rid = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else _new_request_id()
    return rid, child_traceparent(traceparent)


class Telemetry:
    """What every answered request leaves behind: its Prometheus counter and latency, and one access-log line.
    Made by the middleware, and by the gateway for the calls its edge answered (`app.state.edge_telemetry`)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.in_flight = HTTP_IN_FLIGHT.labels(service)
        self._metric_children: dict[tuple[str, str, int], tuple] = {}

    def _children(self, method: str, route_path: str, status: int):
        key = (method, route_path, status)
        hit = self._metric_children.get(key)
        if hit is None:
            # the label children, looked up once per (method, route, status) instead of on every request
            hit = (HTTP_REQUESTS.labels(self.service, method, route_path, str(status)),
                   HTTP_LATENCY.labels(self.service, method, route_path))
            if len(self._metric_children) < 10_000:
                self._metric_children[key] = hit
        return hit

    def count(self, *, method: str, route_path: str, status: int, elapsed: float) -> None:
        """The counter and latency of a request answered elsewhere (the gateway's edge writes its own lines)."""
        requests, latency = self._children(method, route_path, status)
        requests.inc()
        latency.observe(elapsed)

    def count_many(self, route_path: str, calls: list[tuple[str, int, float]]) -> None:
        """`count` for many requests (method, status, seconds): each counter moved once per method and status."""
        counts: dict[tuple[str, int], int] = {}
        for method, status, elapsed in calls:
            counts[(method, status)] = counts.get((method, status), 0) + 1
            self._children(method, route_path, status)[1].observe(elapsed)
        for (method, status), n in counts.items():
            self._children(method, route_path, status)[0].inc(n)

    def done(self, *, method: str, route_path: str, path: str, status: int, elapsed: float, rid: str, tp: str,
             caller: str | None) -> None:
        self.count(method=method, route_path=route_path, status=status, elapsed=elapsed)
        if path not in _QUIET_PATHS and access_log.isEnabledFor(logging.INFO):
            fields = {
                "request_id": rid,
                "trace_id": tp.split("-")[1],
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": round(elapsed * 1000, 2),
                "caller": caller,
            }
            direct = direct_handler(access_log)
            if direct is not None:  # the same line, without a LogRecord (profiled: most of the line's cost)
                direct.write_fields(logging.INFO, access_log.name, "request", fields)
            else:
                # makeRecord + handle is what Logger.info does, minus the caller lookup (a stack walk per
                # request for file and line fields the JSON formatter does not print)
                access_log.handle(access_log.makeRecord(
                    access_log.name, logging.INFO, __file__, 0, "request", (), None, extra=fields))


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int,
                 extra_media_types: dict[str, tuple[str, ...]] | None = None,
                 body_limit: Callable[[str, str], int | None] | None = None) -> None:
        self.app = app
        self.service = service
        self.max_body = max_body_bytes
        # (method, path) -> a file upload route's own larger limit (common.storage.uploads), or None; such a route
        # also takes multipart/form-data
        self.body_limit = body_limit
        # path prefix -> extra accepted media types (OAuth2 forms, Open311 forms, file uploads).
        self.extra_media_types = extra_media_types or {}
        self.telemetry = Telemetry(service)

    def _accepted(self, path: str, *, upload: bool) -> list[str]:
        """The body media types `path` takes, its own first (a 415 names them: Open311's form and multipart)."""
        own = [t for prefix, types in self.extra_media_types.items() if path.startswith(prefix) for t in types]
        if upload and "multipart/form-data" not in own:
            own.append("multipart/form-data")
        return [*own, "application/json"]

    def _media_type_ok(self, path: str, content_type: str | None, *, upload: bool = False) -> bool:
        if content_type is None:
            return True  # no declared type: FastAPI parses it as JSON and reports errors itself
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "application/json" or media.endswith("+json") or (upload and media == "multipart/form-data"):
            return True
        for prefix, types in self.extra_media_types.items():
            if path.startswith(prefix) and media in types:
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming, traceparent, accept_language, length, content_type, chunked = scan_headers(scope.get("headers", ()))
        rid, tp = request_ids(incoming, traceparent)
        rid_token = request_id_var.set(rid)
        tp_token = traceparent_var.set(tp)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status_holder: dict = {"status": 500}
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        extra_headers = [(b"x-request-id", rid.encode()), (b"traceparent", tp.encode())]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message = {**message, "headers": [*message.get("headers", ()), *extra_headers]}
            await send(message)

        self.telemetry.in_flight.inc()
        try:
            if method in _BODY_METHODS:
                limit = self.max_body
                route_limit = self.body_limit(method, path) if self.body_limit is not None else None
                if route_limit is not None:  # a file upload route: its own limit, and multipart bodies
                    limit = state["body_limit"] = route_limit
                if length is not None and length.isdigit() and int(length) > limit:
                    lang = negotiate_language(accept_language)
                    await open311_refusal(path, too_large_response(lang, limit, path))(scope, receive, send_wrapper)
                    return
                has_body = (length not in (None, "0")) or chunked
                if has_body and not self._media_type_ok(path, content_type, upload=route_limit is not None):
                    *others, last = self._accepted(path, upload=route_limit is not None)
                    zh = f"{'、'.join(others)} 或 {last}" if others else last
                    en = f"{', '.join(others)} or {last}" if others else last
                    await open311_refusal(path, problem_response(  # under /open311/: GeoReport's error list
                        415, "unsupported_media_type", lang=negotiate_language(accept_language), instance=path,
                        detail=(f"请以 {zh} 提交请求体", f"Send the body as {en}"),
                    ))(scope, receive, send_wrapper)
                    return
                receive = self._limited(receive, state, limit)
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                # Caught here rather than by Starlette's outermost handler so the answer still carries the
                # request id; the caller learns nothing about the internals.
                access_log.exception("unhandled error", extra={"request_id": rid, "path": path})
                if status_holder.get("started"):
                    raise
                await internal_error_response(negotiate_language(accept_language), path)(scope, receive, send_wrapper)
        finally:
            self.telemetry.in_flight.dec()
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            status = status_holder["status"]
            route_path = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.telemetry.done(method=method, route_path=route_path, path=path, status=status, elapsed=elapsed,
                                rid=rid, tp=tp, caller=state.get("caller"))
            request_id_var.reset(rid_token)
            traceparent_var.reset(tp_token)

    def _limited(self, receive: Receive, state: dict, limit: int) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI turns errors while reading the body into a 400; the flag lets the
                    # error handlers report the real cause.
                    state["body_too_large"] = True
                    raise BodyTooLarge()
            return message

        return wrapped
