"""`POST /services/v1/requests` on svc_services' data plane (`common.dataplane`), without the ASGI stack.

Profiled under the intake benchmark, a quarter of svc_services' event loop went to the layers around the
submission: uvicorn's request cycle, the middlewares' wrappers around `send`, Starlette's request and response
plumbing. The plane accepts a submission from its request line and headers (a POST to the path, a bearer token,
a JSON body of known length within the limit) and answers it with the endpoint's own function
(`router.submit_request`), doing what the observability middleware does (request id and traceparent echoed, the
in-flight gauge, the request counter and latency under the route's label, the access line, a 500 problem).

Whatever the plane would not answer exactly as the app does goes through the app, in process, with the body as it
came: malformed JSON, invalid fields, a missing or bad token (FastAPI's and the app's own problems), overridden
dependencies (tests). Requests the plane does not accept at all never reach it (uvicorn's cycle and the app).
The client address from X-Forwarded-For is not needed here: nothing on this path reads it.
"""
from __future__ import annotations

import time
from typing import Any

import httptools
from fastapi import FastAPI
from starlette.requests import Request

from common.context import request_id_var, traceparent_var
from common.dataplane import body_headers, json_body
from common.errors import internal_error_response
from common.i18n import negotiate_language
from common.observability import Telemetry, access_log, request_ids, scan_headers
from svc_services.requests.fastpath import answer_submission, replay_body, well_formed

PATH = "/services/v1/requests"
_PATH = PATH.encode()
_ASGI = {"version": "3.0", "spec_version": "2.3"}


class IntakePlane:
    def __init__(self, service: str = "svc_services") -> None:
        self.app: FastAPI | None = None  # bound by create_app once the app exists
        self.telemetry = Telemetry(service)
        self.answered = 0  # submissions answered here (tests and diagnostics)

    def accept(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
               client: tuple[str, int] | None, *, proxy_headers: bool = False) -> Any | None:
        app = self.app
        if method != b"POST" or app is None or app.dependency_overrides:
            return None
        parsed = httptools.parse_url(url)
        if parsed.path != _PATH:
            return None
        scanned = body_headers(headers)  # X-Forwarded-For (the gateway's) is fine: nothing here reads the client
        if scanned is None:
            return None
        auth, length, media = scanned
        if auth is None or auth[:7].lower() != b"bearer " or length is None or not length.isdigit():
            return None
        if not 0 < int(length) <= app.state.settings.max_body_bytes or not json_body(media):
            return None  # the app's 413 / 415 problems
        check = app.state.gateway_assertion
        if check is None or check.refusal("POST", _PATH, parsed.query or b"", headers) is not None:
            return None  # not forwarded by the gateway: the app refuses it (common.assertion, ADR 0013)
        return {"type": "http", "asgi": _ASGI, "http_version": "1.1", "method": "POST", "scheme": "http",
                "path": PATH, "raw_path": _PATH, "root_path": "", "query_string": parsed.query or b"",
                "headers": headers, "client": client, "server": None, "app": app, "state": {}}

    async def answer(self, scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started = time.perf_counter()
        request = Request(scope)
        try:
            taken = await well_formed(request, body)
        except Exception:  # noqa: BLE001 - e.g. the token verifier failing: the app answers it as it would
            taken = None
        if taken is None:
            return await self._through_app(scope, body)
        principal = taken[1]
        incoming, traceparent, accept_language, *_ = scan_headers(scope["headers"])
        rid, tp = request_ids(incoming, traceparent)
        request_id_var.set(rid)  # this task's own context: nothing to reset
        traceparent_var.set(tp)
        scope["state"]["request_id"] = rid
        self.telemetry.in_flight.inc()
        try:
            response = await answer_submission(request, *taken)
        except Exception:  # noqa: BLE001 - logged; the caller gets a 500 problem, the plane goes on
            access_log.exception("unhandled error", extra={"request_id": rid, "path": PATH})
            response = internal_error_response(negotiate_language(accept_language), PATH)
        finally:
            self.telemetry.in_flight.dec()
        self.answered += 1
        self.telemetry.done(method="POST", route_path=PATH, path=PATH, status=response.status_code,
                            elapsed=time.perf_counter() - started, rid=rid, tp=tp, caller=principal.caller)
        headers = list(response.raw_headers)
        headers.append((b"x-request-id", rid.encode("latin-1")))
        headers.append((b"traceparent", tp.encode("latin-1")))
        return response.status_code, headers, bytes(response.body)

    async def _through_app(self, scope: dict, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The app answers (its middlewares, FastAPI's validation and its problems), in process."""
        messages: list[dict] = []

        async def send(message: dict) -> None:
            messages.append(message)

        scope["state"] = {}
        await self.app(scope, replay_body(body), send)  # type: ignore[misc]
        start = next(m for m in messages if m["type"] == "http.response.start")
        content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return start["status"], list(start.get("headers", [])), content
