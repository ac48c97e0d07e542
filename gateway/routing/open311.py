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
- A path under `/open311/` the forward route cannot take (one holding a line break, which Starlette's path
  convertor does not match) is answered in Open311's error format as well (`install_routing_errors`).
- A multipart POST (GeoReport's `media` photo) is an upload (common.storage.uploads): streamed on as it arrives,
  never held whole. Its `api_key` is read from the query, or from the form fields ahead of the file: at most
  `KEY_SCAN` bytes are read before forwarding, and passed on in front of the rest. Any other POST body keeps the
  default body limit.
"""
from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from common.auth import Principal
from common.errors import Problem
from common.openapi_contract import install_open311_routing_errors, open311_error as _open311_error
from gateway.routing.forwarder import StreamedBody
from gateway.routing.gate import Call, ExchangeGate

SERVICE = "open311"
PUBLIC_METHODS = ("GET", "HEAD")
KEY_SCAN = 64 * 1024  # of a multipart body, read for a form field api_key before forwarding
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_KEY_PART = re.compile(rb'name="api_key"(?![^\r\n]*filename=)')


def install_routing_errors(app) -> None:
    """The gateway's routing refusals under `/open311/` in Open311's error format (common.openapi_contract)."""
    install_open311_routing_errors(app)


def _media_type(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()


def _form_key(prefix: bytes, boundary: bytes) -> tuple[str | None, bool]:
    """(api_key, whether to stop reading): the key from a complete form part of the multipart prefix; stop once
    it is found or the first file part begins."""
    parts = prefix.split(b"--" + boundary)
    for i, part in enumerate(parts[1:], 1):
        head, _, value = part.partition(b"\r\n\r\n")
        if b"filename=" in head:
            return None, True
        if _KEY_PART.search(head) and i < len(parts) - 1:   # the part is whole: its delimiter follows
            return value[:-2].decode("utf-8", "replace"), True
    return None, False


async def _multipart_key(request: Request, call: Call) -> str | None:
    """An api_key among the form fields ahead of the file, read from at most KEY_SCAN bytes of the stream, which
    go on in front of the rest (the body is still forwarded as it arrives)."""
    m = _BOUNDARY.search(request.headers.get("content-type") or "")
    if m is None:
        return None
    stream = request.stream()
    prefix, key, done = b"", None, False
    while not done and len(prefix) < KEY_SCAN:
        chunk = await anext(stream, None)
        if chunk is None:
            break
        prefix += chunk
        key, done = _form_key(prefix, m.group(1).encode("latin-1"))

    async def body() -> AsyncIterator[bytes]:
        yield prefix
        async for chunk in stream:
            yield chunk

    call.body = StreamedBody(body(), call.body.length)
    return key


async def _api_key(request: Request, call: Call) -> str | None:
    key = request.query_params.get("api_key")
    if not key and _media_type(request) == "application/x-www-form-urlencoded":
        try:
            key = dict(parse_qsl(call.body.decode("utf-8"))).get("api_key")
        except UnicodeDecodeError:
            key = None
    elif not key and isinstance(call.body, StreamedBody):
        key = await _multipart_key(request, call)
    return key.strip() if key and key.strip() else None


async def handle(gate, request: Request) -> Response:
    plain = None
    if request.method == "POST" and _media_type(request) != "multipart/form-data":
        # only a multipart POST is an upload: any other body is read whole, within the default limit
        limit, plain = request.app.state.settings.max_body_bytes, b""
        async for chunk in request.stream():
            plain += chunk
            if len(plain) > limit:
                return _open311_error(request.url.path, 413, f"Request body larger than {limit} bytes (a photo "
                                                             "goes as 'media' in multipart/form-data)")
    call = await Call.of(request, body=plain)  # the body read above is the one forwarded
    identify = None
    if "authorization" not in request.headers:
        key = await _api_key(request, call) if request.method not in PUBLIC_METHODS else None
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
