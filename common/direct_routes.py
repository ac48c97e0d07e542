"""The platform's one transport bypass: a route's own endpoint function called without FastAPI's per-request
machinery, for the few routes whose volume makes that machinery the larger cost.

Profiled under svc_services' intake benchmark, FastAPI's route walk (every route of the service) and dependency
solving cost the event loop more than the submission's own work. `DirectRoutes` is a pure-ASGI middleware (inside
the observability middleware: request id, traceparent, access log, body limit and media-type checks still apply)
that, for a declared method and path with a well-formed JSON body and a valid token, calls the handler the route
itself calls, answering its errors with the app's own exception handlers. Anything else (malformed JSON, invalid
fields, a missing or bad token, another media type, overridden dependencies in tests) goes to FastAPI with the body
as it came, so every error is answered by FastAPI and the app. No rule lives here: the handler is the route's.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.auth import Principal, get_principal
from common.errors import BodyTooLarge, Problem, exception_handler_for


@dataclass(frozen=True)
class DirectRoute:
    """`handler(request, body, principal)` is the function the FastAPI route at `path` calls (and nothing else)."""
    method: str
    path: str
    name: str  # the route's name, for the metrics label
    body: type[BaseModel]
    handler: Callable[[Request, BaseModel, Principal], Awaitable[Response]]


class _RouteLabel:
    """Stands for the route in `scope["route"]` (what the metrics label calls by)."""

    def __init__(self, route: DirectRoute) -> None:
        self.path, self.name = route.path, route.name


def json_media(content_type: str | None) -> bool:
    """Whether FastAPI would read the body as JSON: no declared type, application/json or application/*+json."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def replay_body(body: bytes) -> Receive:
    """An ASGI `receive` that hands over `body` whole, then reports the client gone."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class DirectRoutes:
    def __init__(self, app: ASGIApp, routes: tuple[DirectRoute, ...] = ()) -> None:
        self.app = app
        self.routes = {(r.method, r.path): (r, _RouteLabel(r)) for r in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.routes.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if found is None or scope["app"].dependency_overrides:  # overridden dependencies: FastAPI knows them
            await self.app(scope, receive, send)
            return
        route, label = found
        request = Request(scope, receive)
        try:
            raw = await request.body()
        except BodyTooLarge as exc:
            await (await exception_handler_for(scope["app"], exc)(request, exc))(scope, receive, send)
            return
        taken = None
        if raw and json_media(request.headers.get("content-type")):
            try:
                # orjson refuses what the standard library would take (NaN, Infinity): FastAPI then answers
                taken = route.body.model_validate(orjson.loads(raw)), await get_principal(request)
            except (ValueError, ValidationError, Problem):
                taken = None
        if taken is None:
            await self.app(scope, replay_body(raw), send)  # FastAPI answers it, errors and all
            return
        scope["route"] = label
        try:
            response = await route.handler(request, *taken)
        except Exception as exc:
            handler = exception_handler_for(scope["app"], exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)
