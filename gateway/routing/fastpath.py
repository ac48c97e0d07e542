"""The forwarding fast path: calls to `/{upstream}/...` go straight to the forward endpoint.

FastAPI matches a request by trying every route in turn (and the catch-all forward route comes last, after the
gateway's own operations); profiled under load that walk cost about as much as the grant check and the message
log together. This pure-ASGI middleware sits inside the observability middleware (request id, traceparent,
body limit and media-type checks still apply) and hands a call whose first path segment names an upstream to
the same endpoint function FastAPI would have called (`gateway.routing.router.forward`), with the same
exception handlers. Everything else goes through FastAPI unchanged.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from common.errors import exception_handler_for
from gateway.routing import router as routing
from gateway.routing.forwarder import local_path


class _ForwardRoute:
    """Stands for the catch-all forward route in `scope["route"]` (what the metrics label calls by)."""

    path = "/{service}/{rest:path}"
    name = "forward"


FORWARD_ROUTE = _ForwardRoute()


class ForwardFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.methods = frozenset(routing.METHODS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in self.methods:
            path = local_path(scope)
            cut = path.find("/", 1)
            if cut > 1:
                app = scope["app"]
                service = path[1:cut]
                if service in app.state.forwarder.upstreams:
                    # the route FastAPI would have matched: metrics label the call by its template, not by
                    # every concrete path
                    scope["route"] = FORWARD_ROUTE
                    request = Request(scope, receive)
                    try:
                        response = await routing.forward(service, path[cut + 1:], request)
                    except Exception as exc:  # the app's own handlers (Problem, body too large, ...)
                        handler = exception_handler_for(app, exc)
                        if handler is None:
                            raise
                        response = await handler(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

