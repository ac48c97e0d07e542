"""`POST /services/v1/requests` without FastAPI's per-request machinery.

Profiled under load, routing (a walk over every route of the service), dependency solving and the layers around
the endpoint cost svc_services more than the submission's own checks. This pure-ASGI middleware sits inside the
observability middleware (request id, traceparent, access log, body limit and media-type checks still apply)
and, for a well-formed submission with a valid token, calls the endpoint's own function
(`router.submit_request`), answering its errors with the app's own exception handlers. Anything else (malformed
JSON, invalid fields, a missing or bad token, another media type) goes to FastAPI with the body as it came, so
every error is answered exactly as before.
"""
from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.auth import get_principal
from common.errors import BodyTooLarge, Problem, exception_handler_for
from svc_services.requests.router import submit_request
from svc_services.requests.schemas import RequestCreate

PATH = "/services/v1/requests"


class _SubmitRoute:
    """Stands for the submit route in `scope["route"]` (what the metrics label calls by)."""

    path = PATH
    name = "submit"


SUBMIT_ROUTE = _SubmitRoute()


def _json_media(content_type: str | None) -> bool:
    # what FastAPI parses as JSON: no declared type, application/json or application/*+json
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class IntakeFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH
                or scope["app"].dependency_overrides):  # overridden dependencies: FastAPI knows them
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            raw = await request.body()
        except BodyTooLarge as exc:
            await (await exception_handler_for(scope["app"], exc)(request, exc))(scope, receive, send)
            return
        body = principal = None
        if raw and _json_media(request.headers.get("content-type")):
            try:
                body = RequestCreate.model_validate(json.loads(raw))
                principal = await get_principal(request)
            except (ValueError, ValidationError, Problem):
                body = None
        if body is None or principal is None:
            await self.app(scope, _replay(raw), send)  # FastAPI answers it, errors and all
            return
        scope["route"] = SUBMIT_ROUTE
        try:
            response = await submit_request(request, body, principal, scope["app"].state.clock,
                                            request.headers.get("idempotency-key"))
        except Exception as exc:  # the app's own handlers (Problem, ...), as FastAPI would use them
            handler = exception_handler_for(scope["app"], exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)
