"""A data plane: the requests a service answers straight off uvicorn's HTTP protocol, without the ASGI stack.

Every request pays for the layers between the socket and the endpoint: uvicorn's request cycle and its ASGI
messages, uvicorn's proxy-headers middleware, Starlette's and FastAPI's middlewares, the request and response
objects. For most operations that is money well spent; for a service's one hot path it was most of the cost (the
gateway's exchange calls, ADR 0010; svc_services' submissions, ADR 0011).

`PlaneHttpProtocol` is uvicorn's httptools protocol (`uvicorn --http common.dataplane:PlaneHttpProtocol`;
`deploy/services.py` names it for the launcher, `onenet serve` and the benchmarks). When a request's headers are
in, it asks the app's plane (published in the ASGI lifespan state under `PLANE_KEY`, see `plane_state`) whether
to answer it; if so the body is collected and the plane answers. Everything else goes to uvicorn's own cycle and
the app, unchanged, as do requests under `Expect: 100-continue`, a limit on concurrency, a second request
pipelined behind one in flight, and protocol upgrades.

A plane has two methods:
- `accept(method, url, headers, client, *, proxy_headers) -> Any | None`: from the request line and headers
  alone, what to answer it with, or None for the app;
- `async answer(accepted, body) -> (status, headers, body)`: the whole answer. It does what the observability
  middleware does for the app's requests (request id and traceparent, metrics, the access line, a 500 problem).
"""
from __future__ import annotations

from typing import Any, Protocol

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# The lifespan-state key under which an app publishes its plane (uvicorn hands every connection the lifespan
# state; ASGI lifespan "state" extension).
PLANE_KEY = "onenet.plane"


class Plane(Protocol):
    def accept(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
               client: tuple[str, int] | None, *, proxy_headers: bool = False) -> Any | None: ...

    async def answer(self, accepted: Any, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]: ...


class _PlaneCycle:
    """Stands where uvicorn's RequestResponseCycle stands while the plane has the request: uvicorn's protocol
    feeds the body into `body`, flags `more_body`, `disconnected` and `keep_alive`, and calls
    `message_event.set()`; the answer is written when the body is complete."""

    def __init__(self, protocol: "PlaneHttpProtocol", plane: Plane, accepted: Any, keep_alive: bool) -> None:
        self.protocol = protocol
        self.plane = plane
        self.accepted = accepted
        self.body = b""
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.keep_alive = keep_alive
        self.message_event = self
        self.started = False

    def set(self) -> None:  # uvicorn: body arrived, the message is complete, or the client went away
        if self.disconnected or self.started:
            return
        if self.more_body:
            if len(self.body) > HIGH_WATER_LIMIT:
                self.protocol.flow.resume_reading()  # the plane accepts bounded bodies only: keep reading it
            return
        self.started = True
        task = self.protocol.loop.create_task(self.run())
        self.protocol.tasks.add(task)
        task.add_done_callback(self.protocol.tasks.discard)

    async def run(self) -> None:
        protocol = self.protocol
        try:
            status, headers, body = await self.plane.answer(self.accepted, self.body)
        except BaseException:
            # `answer` turns every error into a problem; should that fail too, the client must not be left
            # waiting on a connection that will never answer
            self.response_complete = True
            protocol.transport.close()
            raise
        if self.disconnected:
            self.response_complete = True
            return
        out = [STATUS_LINE[status]]
        for name, value in protocol.server_state.default_headers:
            out += [name, b": ", value, b"\r\n"]
        for name, value in headers:
            out += [name, b": ", value, b"\r\n"]
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        out.append(body)
        protocol.transport.write(b"".join(out))
        self.response_complete = True
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()


class PlaneHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the app's data plane in front of the ASGI app."""

    def on_headers_complete(self) -> None:
        plane: Plane | None = self.app_state.get(PLANE_KEY)
        if (plane is None or self.expect_100_continue or self.limit_concurrency is not None
                or (self.cycle is not None and not self.cycle.response_complete) or self.parser.should_upgrade()):
            return super().on_headers_complete()
        accepted = plane.accept(self.parser.get_method(), self.url, self.headers, self.client,
                                proxy_headers=self.config.proxy_headers)
        if accepted is None:
            return super().on_headers_complete()
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        self.cycle = _PlaneCycle(self, plane, accepted, keep_alive)  # type: ignore[assignment]


def body_headers(headers: list[tuple[bytes, bytes]], *, proxy_headers: bool = False
                 ) -> tuple[bytes | None, bytes | None, bytes | None] | None:
    """(authorization, content-length, content-type) of a request a plane may take, or None when it must go to
    the app: a chunked body, or X-Forwarded-* with `proxy_headers` (uvicorn's middleware decides whether to
    believe them)."""
    auth = length = media = None
    for k, v in headers:
        if k == b"authorization":
            auth = v
        elif k == b"content-length":
            length = v
        elif k == b"content-type":
            media = v
        elif k == b"transfer-encoding" or (proxy_headers and k.startswith(b"x-forwarded-")):
            return None
    return auth, length, media


def json_body(content_type: bytes | None) -> bool:
    """Whether the app would read the body as JSON: no declared type, application/json or application/*+json."""
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def plane_state(plane: Plane) -> dict[str, Any]:
    """The lifespan state that switches the data plane on for this app."""
    return {PLANE_KEY: plane}
