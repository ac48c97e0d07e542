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
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from common.auth import Principal
from common.errors import Problem
from gateway.routing.gate import Call, ExchangeGate

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
    call = await Call.of(request)
    identify = None
    if "authorization" not in request.headers:
        key = await _api_key(request) if request.method not in PUBLIC_METHODS else None
        if key:
            call.headers = [*call.headers, (b"authorization", f"Bearer {key}".encode())]
            request.scope["headers"] = call.headers
            request.__dict__.pop("_headers", None)  # Starlette caches the parsed headers
        elif request.method in PUBLIC_METHODS:
            # anonymous: member `anonymous`, rate-limited per address, no grant (public documents only), logged
            host = request.client.host if request.client else "-"

            async def identify(call: Call) -> Principal:
                return Principal(member="anonymous", user=f"anonymous:{host}", role="anonymous")
        else:
            return _open311_error(request.url.path, 401, "api_key required (or Authorization: Bearer <token>)",
                                  {"WWW-Authenticate": "Bearer"})
    return await gate.exchange(call, SERVICE, identify=identify, grant=identify is None, refuse=_refusal)


def _refusal(exc: Problem, call: Call) -> Response:
    """A refusal of the gateway's own (401, 403, 429, 503, …) in Open311's error format, its description the
    problem's detail in the caller's language."""
    problem = ExchangeGate.refusal(exc, call)
    description = json.loads(bytes(problem.body)).get("detail") or "error"
    return _open311_error(call.request.url.path, exc.status, str(description), exc.headers)
