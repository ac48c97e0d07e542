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

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.auth import Principal, get_principal
from common.dataplane import json_body
from common.errors import BodyTooLarge, Problem, exception_handler_for
from svc_services.requests.router import submit_request
from svc_services.requests.schemas import RequestCreate

PATH = "/services/v1/requests"


class _SubmitRoute:
    """Stands for the submit route in `scope["route"]` (what the metrics label calls by)."""

    path = PATH
    name = "submit"


SUBMIT_ROUTE = _SubmitRoute()


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


async def well_formed(request: Request, raw: bytes) -> tuple[RequestCreate, Principal] | None:
    """The submission and its caller when FastAPI would take them as they are; None: the app answers (FastAPI's
    validation problems, the app's 401 / 403)."""
    try:
        # orjson refuses what the standard library would take (NaN, Infinity): the app then answers, as FastAPI
        return RequestCreate.model_validate(orjson.loads(raw)), await get_principal(request)
    except (ValueError, ValidationError, Problem):
        return None


async def answer_submission(request: Request, submission: RequestCreate, principal: Principal) -> Response:
    """The endpoint's own work (`router.submit_request`), its errors answered by the app's own handlers as
    FastAPI would use them."""
    app = request.scope["app"]
    try:
        return await submit_request(request, submission, principal, app.state.clock,
                                    request.headers.get("idempotency-key"))
    except Exception as exc:
        handler = exception_handler_for(app, exc)
        if handler is None:
            raise
        return await handler(request, exc)


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
        media = request.headers.get("content-type")
        json_media = json_body(None if media is None else media.encode("latin-1"))  # what FastAPI reads as JSON
        taken = await well_formed(request, raw) if raw and json_media else None
        if taken is None:
            await self.app(scope, replay_body(raw), send)  # FastAPI answers it, errors and all
            return
        scope["route"] = SUBMIT_ROUTE
        response = await answer_submission(request, *taken)
        await response(scope, receive, send)
