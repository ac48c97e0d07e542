"""Open311 GeoReport v2 at `/open311/v2/...`, forwarded to svc_services: public reads, as the spec expects.

- With `Authorization: Bearer …` a call goes through the exchange like any other call.
- A POST without that header carries the spec's `api_key` (form field or query parameter): the gateway lifts it
  into the Authorization header, so the key is verified here (a revoked member is stopped at the gateway), the
  call is rate-limited for its member and logged under it. `api_key` is a gateway-issued access token: a member
  system's client-credentials token, or the token a resident / staff user got by signing in through an app.
- A GET / HEAD without a token is forwarded anonymously (member `anonymous`, user `anonymous:<client address>`,
  rate-limited per address, logged); svc_services serves only public documents to it (no personal data).
- Any other call without a key is refused here. Refusals made by the gateway itself (401, 403, 429, 503, …) are
  answered in Open311's error format, `[{"code": …, "description": …}]` or `<errors><error>…`.
"""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from common.auth import Principal
from common.errors import Problem

SERVICE = "open311"
PUBLIC_METHODS = ("GET", "HEAD")


def _open311_error(path: str, status: int, description: str, headers: dict[str, str] | None = None) -> Response:
    keep = {k: v for k, v in (headers or {}).items() if k.lower() in ("www-authenticate", "retry-after")}
    if path.endswith(".xml"):
        body = (f'<?xml version="1.0" encoding="utf-8"?>\n<errors><error><code>{status}</code>'
                f"<description>{escape(description)}</description></error></errors>").encode()
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8", headers=keep)
    body = json.dumps([{"code": status, "description": description}], ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type="application/json; charset=utf-8", headers=keep)


def _as_open311(request: Request, resp: Response) -> Response:
    """A refusal produced by the gateway itself (no upstream answered) in Open311's error format."""
    if resp.status_code < 400 or "x-onenet-service" in resp.headers:
        return resp
    try:
        description = json.loads(bytes(resp.body)).get("detail") or "error"
    except (ValueError, AttributeError):
        description = "error"
    return _open311_error(request.url.path, resp.status_code, str(description), dict(resp.headers))


async def _api_key(request: Request) -> str | None:
    key = request.query_params.get("api_key")
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if not key and media == "application/x-www-form-urlencoded":
        try:
            key = dict(parse_qsl((await request.body()).decode("utf-8"))).get("api_key")
        except UnicodeDecodeError:
            key = None
    return key.strip() if key and key.strip() else None


async def handle(gate, request: Request) -> Response:
    if "authorization" not in request.headers:
        key = await _api_key(request) if request.method not in PUBLIC_METHODS else None
        if key:
            request.scope["headers"] = [*request.scope["headers"], (b"authorization", f"Bearer {key}".encode())]
            request.__dict__.pop("_headers", None)  # Starlette caches the parsed headers
        elif request.method in PUBLIC_METHODS:
            return await _anonymous(gate, request)
        else:
            return _open311_error(request.url.path, 401, "api_key required (or Authorization: Bearer <token>)",
                                  {"WWW-Authenticate": "Bearer"})
    return _as_open311(request, await gate.handle(request, SERVICE))


async def _anonymous(gate, request: Request) -> Response:
    path = request.url.path
    started, at = time.perf_counter(), gate.clock.now()
    body = await request.body()
    host = request.client.host if request.client else "-"
    principal = Principal(member="anonymous", user=f"anonymous:{host}", role="anonymous")
    try:
        if not await gate.audit.admit():
            raise Problem(503, "exchange.audit_backlog", ("交换日志暂时无法写入，请稍后重试",
                                                          "The message log is behind; retry later"),
                          headers={"Retry-After": "5"})
        if gate.limiter is not None:
            await gate.limiter.check(principal)
        resp = await gate.forwarder.forward(request, SERVICE, principal, path=path, body=body)
    except Problem as exc:
        detail = exc.detail[1] if isinstance(exc.detail, tuple) else str(exc.detail or exc.code)
        resp = _open311_error(path, exc.status, detail, exc.headers)
    gate.log(request, path, at, started, body, resp)
    return resp
