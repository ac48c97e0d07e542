"""Open311's answer where no route answers: a path under `/open311/` that names no operation (an unknown document,
an empty format, an id holding a slash) or a method its path does not take.

GeoReport v2 has one error format, `[{"code", "description"}]` as JSON or `<errors>` as XML, and the operations
under `/open311/` declare only that (common.openapi_contract), so these routing refusals use it too, in the
format the path's extension names (JSON unless it ends in `.xml`), with the platform handler's status, detail
(in the caller's language) and headers (405's `Allow`).
"""
from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from svc_services.open311.formats import errors

PREFIX = "/open311/"
_KEPT_HEADERS = ("allow", "www-authenticate", "retry-after")


def install_routing_errors(app: FastAPI) -> None:
    """Wraps the app's handler of routing errors (common.errors) for paths under `/open311/`."""
    platform = app.exception_handlers[StarletteHTTPException]

    async def routing_error(request: Request, exc: StarletteHTTPException):
        answer = await platform(request, exc)
        path = request.scope.get("path", "")
        if not path.startswith(PREFIX):
            return answer
        problem = json.loads(bytes(answer.body))
        headers = {k: v for k, v in answer.headers.items() if k.lower() in _KEPT_HEADERS}
        description = problem.get("detail") or problem.get("title") or str(answer.status_code)
        return errors("xml" if path.endswith(".xml") else "json", answer.status_code,
                      [(answer.status_code, description)], headers or None)

    app.add_exception_handler(StarletteHTTPException, routing_error)
