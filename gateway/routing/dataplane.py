"""The gateway's data plane: exchange calls answered straight off uvicorn's HTTP protocol, without the ASGI stack.

Every forwarded call pays for the layers between the socket and the forward: uvicorn's request cycle and its
ASGI messages, uvicorn's proxy-headers middleware, Starlette's and FastAPI's middlewares, the request and
response objects. For the gateway's own operations that is money well spent; for the exchange, where the gateway
only checks, forwards and logs, it was most of the cost (bench/gateway.py, README Figures).

The gateway runs on `common.dataplane.PlaneHttpProtocol`. When the headers of a request are in, it asks the
app's `ExchangePlane` (published in the lifespan state) whether the call is a plain exchange call; if so the body
is collected and the plane answers it with the very same
`ExchangeGate.exchange` the ASGI route uses: token, revocation, rate limit, grant, forward, masking, message log.
Anything else goes to uvicorn's own cycle and through the app as before: the gateway's own API, Open311, X-Road,
HEAD and OPTIONS, `Expect: 100-continue`, chunked request bodies, bodies over the limit or not JSON (the app
answers those with its 413 / 415 problems), metrics pages signed in by cookie, calls while client certificates
are pinned (mutual TLS is checked by the app), a second request pipelined behind one in flight.

The plane does what the observability middleware does for every request: request id and traceparent (echoed on
the answer), the in-flight gauge, the request counter and latency histogram under the forward route's label,
the access-log line, a 500 problem with the request id for an unexpected error.
"""
from __future__ import annotations

import time
import urllib.parse
import httptools

from common.context import request_id_var, traceparent_var
from common.dataplane import body_headers, json_body
from common.errors import internal_error_response
from common.i18n import negotiate_language
from common.observability import Telemetry, access_log, request_ids, scan_headers
from gateway.routing.exchange import Call, ExchangeGate

FAST_METHODS = frozenset({b"GET", b"POST", b"PUT", b"PATCH", b"DELETE"})
FORWARD_ROUTE = "/{service}/{rest:path}"  # the metrics label of the forward route, as on the ASGI path
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ExchangePlane:
    """Which calls the data plane answers, and the answering."""

    def __init__(self, gate: ExchangeGate, *, service: str, max_body_bytes: int, excluded: frozenset[str]) -> None:
        self.gate = gate
        self.max_body = max_body_bytes
        self.excluded = excluded  # upstream names with a route of their own (Open311)
        self.telemetry = Telemetry(service)
        self.answered = 0  # calls answered here (tests and diagnostics)

    def accept(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
               client: tuple[str, int] | None, *, proxy_headers: bool = False) -> Call | None:
        """A `Call` when this is a plain exchange call the plane can answer whole; None sends it to the app.

        With `proxy_headers` (uvicorn's --proxy-headers, its default) a call that carries X-Forwarded-* goes to
        the app, where uvicorn's middleware decides whether to believe them."""
        if method not in FAST_METHODS or self.gate.forwarder.pins.pins:
            return None
        parsed = httptools.parse_url(url)
        path = parsed.path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        cut = path.find("/", 1)
        if cut <= 1:
            return None
        service = path[1:cut]
        if service not in self.gate.forwarder.upstreams or service in self.excluded:
            return None
        scanned = body_headers(headers, proxy_headers=proxy_headers)
        if scanned is None:
            return None
        auth, length, media = scanned
        if auth is None or auth[:7].lower() != b"bearer ":
            return None  # the app answers 401 itself, and knows the metrics pages' cookie
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                return None
            if length != b"0" and method.decode() in _BODY_METHODS and not json_body(media):
                return None
        # The request line holds the path below the root path (uvicorn's --root-path, the gateway's mount point
        # behind a proxy that strips it): calls are checked, forwarded and logged by it, as on the ASGI route
        # (forwarder.local_path).
        return Call(method=method.decode("ascii"), path=path, query=parsed.query or b"",
                    headers=headers, client=client)

    async def answer(self, call: Call, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started = time.perf_counter()
        call.body = body
        incoming, traceparent, accept_language, *_ = scan_headers(call.headers)
        rid, tp = request_ids(incoming, traceparent)
        request_id_var.set(rid)  # this task's own context: nothing to reset
        traceparent_var.set(tp)
        call.lang = negotiate_language(accept_language)
        service = call.path[1:call.path.find("/", 1)]
        caller = None
        self.telemetry.in_flight.inc()
        try:
            resp, principal = await self.gate.exchange(call, service)
            caller = principal.caller if principal is not None else None
        except Exception:  # noqa: BLE001 - logged; the caller gets a 500 problem, the plane goes on
            access_log.exception("unhandled error", extra={"request_id": rid, "path": call.path})
            resp = internal_error_response(call.lang, call.path)
        finally:
            self.telemetry.in_flight.dec()
        status = resp.status_code
        self.answered += 1
        self.telemetry.done(method=call.method, route_path=FORWARD_ROUTE, path=call.path, status=status,
                            elapsed=time.perf_counter() - started, rid=rid, tp=tp, caller=caller)
        headers = resp.raw_headers
        headers.append((b"x-request-id", rid.encode("latin-1")))
        headers.append((b"traceparent", tp.encode("latin-1")))
        return status, headers, bytes(resp.body)
