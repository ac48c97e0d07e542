"""The OpenAPI document as a contract: what every operation can answer, declared in one place (issue 31).

`create_service_app` declares the shared problem statuses on every operation (`SHARED_PROBLEM_STATUSES`, through
FastAPI's app-wide `responses=`) and runs `finish` on the app's document, which adds what a per-route declaration
would repeat everywhere:

- 405 with its `Allow` header (every path answers an undeclared method so; `install_method_not_allowed` makes
  that true of apps with a catch-all route, the gateway's forward route, where Starlette would fall through to
  it and answer 404);
- how a retried create answers. A create taking an `Idempotency-Key` header replays the first answer, its 201,
  with `Idempotency-Replayed: true` (`common.idempotency`), never 200: its 201 declares that header. A create
  without that header (`POST` declaring 201) whose retry is found by a client-chosen id (the time bank's
  `posting_id`, an activity's check-in) answers the first one's body again with 200, declared beside the 201;
- the error format a protocol prescribes instead of problem+json: GeoReport v2's error list under
  `/open311/` (`[{"code", "description"}]` as JSON, or XML per the path's format, the path's `{fmt}` being one of
  `OPEN311_FORMATS`, in which its documents are answered too, and an id in the path one segment); X-Road's faults under `/r1/`,
  only 400 and 500 (PR-REST §4.6), `{type, message, detail}` as JSON or `<error>` as XML;
- `/metrics` as Prometheus text;
- the `Idempotency-Key` header's length (`common.idempotency.check_key` refuses others with 400);
- a distinct `title` on every component schema (`distinct_titles`): generators name their classes by it
  (openapi-python-client), and two schemas titled alike, FastAPI's `svc_x__pkg__schemas__TransitionIn` beside
  another `TransitionIn`, or the gateway's `matching__EntryIn` beside svc_services' `EntryIn`, would be one class
  and the second dropped.

Idempotent: running it twice changes nothing.
"""
from __future__ import annotations

import copy
import functools
import json
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

SHARED_PROBLEM_STATUSES = (400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 428, 429, 500, 503)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
ALLOW_HEADER = {"Allow": {"description": "该路径支持的方法 The methods this path supports",
                          "schema": {"type": "string"}}}
OPEN311_PREFIX = "/open311/"
OPEN311_FORMATS = ("json", "xml")  # GeoReport v2's formats, a path's extension (another is a 404)
OPEN311_SEGMENT = r"^[^/\n]+$"  # one segment; the gateway routes no line break either
OPEN311_KEPT_HEADERS = ("allow", "www-authenticate", "retry-after")  # of a refusal answered as Open311's
OPEN311_ERRORS = {"type": "array", "items": {"type": "object", "required": ["code", "description"], "properties": {
    "code": {"type": "integer"}, "description": {"type": "string"}}}}
XROAD_PREFIX = "/r1/"
XROAD_FAULT = {"type": "object", "required": ["type", "message", "detail"], "properties": {
    "type": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string"}}}
PROMETHEUS_TEXT = {"text/plain": {"schema": {"type": "string"}}}
REPLAYED_HEADER = {"Idempotency-Replayed": {
    "description": "仅在带 Idempotency-Key 时：true 为重放首次的答复 only under an Idempotency-Key: true on a replay",
    "schema": {"type": "string", "enum": ["true", "false"]}}}


def _operations(doc: dict[str, Any]):
    for path, item in (doc.get("paths") or {}).items():
        for method in HTTP_METHODS:
            op = item.get(method) if isinstance(item, dict) else None
            if isinstance(op, dict):
                yield path, method, op


def _replays_201(created: dict[str, Any]) -> bool:
    """The create's replay is its 201 again: its 201 declares `Idempotency-Replayed`."""
    return any(name.lower() == "idempotency-replayed" for name in created.get("headers") or {})


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """Declare, in place, what every operation of `doc` can answer beyond its route's own declarations."""
    from common.idempotency import MAX_KEY_LENGTH

    for path, method, op in _operations(doc):
        keyed = False
        for param in op.get("parameters") or ():
            if param.get("in") == "header" and str(param.get("name", "")).lower() == "idempotency-key":
                keyed = True
                param["schema"] = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                                   "title": "Idempotency-Key"}
        responses = op.setdefault("responses", {})
        if keyed and method == "post" and "201" in responses and not _replays_201(responses["201"]):
            responses["201"].setdefault("headers", {}).update(copy.deepcopy(REPLAYED_HEADER))
        if "405" in responses:
            responses["405"].setdefault("headers", copy.deepcopy(ALLOW_HEADER))
        if method == "post" and "201" in responses and "200" not in responses and not _replays_201(responses["201"]):
            replay = copy.deepcopy(responses["201"])
            replay["description"] = "重放：同一请求再次提交时答复首次的结果 A retried create: the first answer again"
            responses["200"] = replay
        if path.startswith(OPEN311_PREFIX):
            for param in op.get("parameters") or ():
                if param.get("in") == "path" and param.get("name") != "fmt":
                    # an id is one path segment before the format's extension: a slash in it routes elsewhere
                    param["schema"] = {**param.get("schema", {}), "pattern": OPEN311_SEGMENT}
                if param.get("in") == "path" and param.get("name") == "fmt":
                    param["schema"] = {"type": "string", "enum": list(OPEN311_FORMATS), "title": "Fmt"}
                    for status, resp in responses.items():  # each document as JSON or, for .xml, XML
                        if status.startswith("2"):
                            resp.setdefault("content", {}).setdefault("text/xml", {"schema": {"type": "string"}})
            for status, resp in responses.items():
                if status.isdigit() and int(status) >= 400:
                    resp["description"] = "GeoReport v2 错误列表 GeoReport v2 error list"
                    resp["content"] = {"application/json": {"schema": copy.deepcopy(OPEN311_ERRORS)},
                                       "text/xml": {"schema": {"type": "string"}}}
        if path.startswith(XROAD_PREFIX):
            for status in [s for s in responses if s.isdigit() and int(s) >= 400]:
                if status in ("400", "500"):
                    responses[status] = {"description": "X-Road fault (PR-REST §4.6)", "content": {
                        "application/json": {"schema": copy.deepcopy(XROAD_FAULT)},
                        "text/xml": {"schema": {"type": "string"}}}}
                else:
                    del responses[status]
        if path == "/metrics" and method == "get" and "200" in responses:
            responses["200"]["content"] = copy.deepcopy(PROMETHEUS_TEXT)
    return distinct_titles(doc)


def distinct_titles(doc: dict[str, Any]) -> dict[str, Any]:
    """Each component schema whose `title` another one shares is titled by its own (unique) name, in place."""
    schemas = (doc.get("components") or {}).get("schemas") or {}
    seen: dict[str, int] = {}
    for name, schema in schemas.items():
        if isinstance(schema, dict):
            title = schema.get("title", name)
            seen[title] = seen.get(title, 0) + 1
    for name, schema in schemas.items():
        if isinstance(schema, dict) and seen.get(schema.get("title", name), 0) > 1:
            schema["title"] = name
    return doc


def install_finished_openapi(app) -> None:
    """`app.openapi()` returns the finished document."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        return finish(original())

    app.openapi = openapi


@functools.lru_cache(maxsize=4096)
def _path_regex(path: str):
    from starlette.routing import compile_path

    return compile_path(path)[0]


def _catch_all(path: str | None) -> bool:
    return isinstance(path, str) and path.startswith("/{") and ":path}" in path


def allowed_methods(app, path: str) -> str:
    """`Allow` for `path`: every method of every route of `app` matching it (several routes can share a path, a
    list's GET and a create's POST in two routers; Starlette's own 405 names only the first route's)."""
    from fastapi.routing import iter_route_contexts

    allow: set[str] = set()
    for ctx in iter_route_contexts(app.router.routes):
        p = ctx.path
        if (ctx.methods and isinstance(p, str) and not _catch_all(p) and not getattr(ctx.original_route, "_onenet_405", False)
                and _path_regex(p).match(path)):
            allow.update(ctx.methods)
    return ", ".join(sorted(allow))


async def _method_not_allowed(request: Request):
    from common.errors import Problem

    raise Problem(405, "method_not_allowed", ("不支持该请求方法", "Method not allowed"),
                  headers={"Allow": allowed_methods(request.app, request.scope["path"])})


def install_method_not_allowed(app, routers) -> None:
    """Before the app's catch-all route (one matching any path: `/{service}/{rest:path}`), a route per path of the
    operations above it that answers the methods they do not take with 405 and `Allow`, as Starlette does where
    nothing follows. (Elsewhere Starlette answers 405 itself and the app's handler fills `Allow` with
    `allowed_methods`.)

    A catch-all is declared directly on one of `routers`, the routers the app was given (the gateway's forwarder);
    an app without one is left as it is at once: reading the app's routes builds every route's dependencies, about
    70 ms of a service's start otherwise spent for nothing (FastAPI builds them lazily, as requests need them)."""
    from fastapi.routing import iter_route_contexts

    if not any(_catch_all(getattr(route, "path", None)) for router in routers for route in router.routes):
        return
    routes = app.router.routes
    methods: dict[str, set[str]] = {}
    at = None
    for i, top in enumerate(routes):
        if getattr(top, "_onenet_405", False):
            return  # installed already
        for ctx in iter_route_contexts([top]):
            if _catch_all(ctx.path):
                at = i
                break
            if ctx.methods and isinstance(ctx.path, str):
                methods.setdefault(ctx.path, set()).update(ctx.methods)
        if at is not None:
            break
    if at is None:
        return
    extra = []
    for path, taken in methods.items():
        others = [m for m in ALL_METHODS if m not in taken]
        if others:
            route = Route(path, _method_not_allowed, methods=others, include_in_schema=False)
            route._onenet_405 = True
            extra.append(route)
    routes[at:at] = extra


def open311_error(path: str, status: int, description: str, headers: dict[str, str] | None = None):
    """GeoReport v2's error list of one error, as JSON or, for a path ending in `.xml`, XML; of `headers` only
    `OPEN311_KEPT_HEADERS` (405's Allow, 401's WWW-Authenticate, Retry-After)."""
    from xml.sax.saxutils import escape

    from starlette.responses import Response

    keep = {k: v for k, v in (headers or {}).items() if k.lower() in OPEN311_KEPT_HEADERS}
    if path.endswith(".xml"):
        body = (f'<?xml version="1.0" encoding="utf-8"?>\n<errors><error><code>{status}</code>'
                f"<description>{escape(description)}</description></error></errors>").encode()
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8", headers=keep)
    body = json.dumps([{"code": status, "description": description}], ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json; charset=utf-8", headers=keep)


def open311_refusal(path: str, refusal):
    """A platform refusal (a problem+json response: a routing error, the middleware's 413 or 415) as GeoReport's
    error list where the path is under `/open311/`, whose operations declare only that; elsewhere as it is. The
    description is the problem's detail, in the caller's language."""
    if not path.startswith(OPEN311_PREFIX):
        return refusal
    problem = json.loads(bytes(refusal.body))
    description = problem.get("detail") or problem.get("title") or str(refusal.status_code)
    return open311_error(path, refusal.status_code, str(description), dict(refusal.headers))


def install_open311_routing_errors(app) -> None:
    """Where no route of `app` answers a path under `/open311/` (an unknown document or format, an id holding a
    slash or a line break, a method the path does not take), the app's routing refusal (common.errors' problem:
    404, 405 with `Allow`) answered in GeoReport v2's error list (`open311_refusal`): svc_services for its routes
    (svc_services.open311.fallback), the gateway for the paths its forward route cannot take
    (gateway.routing.open311)."""
    from starlette.exceptions import HTTPException

    platform = app.exception_handlers[HTTPException]

    async def routing_error(request: Request, exc: HTTPException):
        return open311_refusal(request.scope.get("path", ""), await platform(request, exc))

    app.add_exception_handler(HTTPException, routing_error)
