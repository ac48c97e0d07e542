"""The X-Road Message Protocol for REST (PR-REST, nordic-institute/X-Road `doc/Protocols/`), the parts that are
rules rather than routes: identifiers, the service address, the client header, the request hash and faults.

- Identifiers (§4.8) use only `A-Z a-z 0-9 ' ( ) + , - . = ?`. The platform's member codes may hold `_`
  (`svc_services`): on the X-Road face every identifier part goes through `xroad_code`, which writes `_` as `.`.
  Member codes never contain `.` (`gateway.members.schemas`), so the mapping is one-to-one; it is the one place
  the X-Road spelling of an identifier is made (`ResourceView.of` applies it to the catalogue's addresses).
- The service id (§4.1, §4.2) is read from the raw request path, each of its five parts percent-decoded on its
  own: a part that decodes to a character outside §4.8 (an encoded `/` included) is refused, never re-split.
- `X-Road-Client` (§4.3): the last one when several are sent; parts percent-decoded, checked against §4.8.
- `X-Road-Request-Hash` (§4.3): base64 SHA-512(SHA-512(headers) + SHA-512(body)), SHA-512(headers) without a body.
  "headers" is the request's head as X-Road's own security server serialises it: the method, CRLF, the raw
  path with its query, CRLF, then each header `name:value` CRLF in the order received, without the headers the
  protocol filters (hop-by-hop, Host, User-Agent), those a proxy in front changes or adds (Content-Length,
  X-Forwarded-*, Forwarded, X-Real-IP: the gateway's edge adds X-Forwarded-For and -Proto) and a request-hash
  header the client sent. So the hash is the same whether the call came through the edge (nginx) or not, and a
  client can compute it from what it sent.
- Faults (§4.6): 400 for a request that does not comply with the protocol (`Client.*`), 500 for an error of the
  security server or a provider that could not answer (`Server.*`): the status follows the fault type's prefix,
  as in X-Road's own client proxy. Always `X-Road-Error` and a body `{type, message, detail}` as
  `application/json; charset=utf-8`, or `<error>` as `text/xml; charset=utf-8` when the client's Accept asks
  for XML.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import unquote
from xml.sax.saxutils import escape

from starlette.responses import Response

from common.context import request_id_var
from common.errors import Problem

IDENTIFIER = re.compile(r"[A-Za-z0-9'()+,\-.=?]+")
PROTOCOL = "r1"
METADATA = ("listMethods", "allowedMethods", "getOpenAPI")
# not part of the hashed head: hop-by-hop and origin headers the protocol filters, and what a proxy may rewrite
UNHASHED = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                      b"trailer", b"transfer-encoding", b"upgrade", b"host", b"user-agent", b"content-length",
                      b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                      b"forwarded", b"x-real-ip", b"x-road-request-hash"})
XML_TYPES = ("text/xml", "application/xml")


def xroad_code(value: str) -> str:
    """A platform identifier (member, subsystem or service code) in X-Road's characters: `_` written as `.`."""
    return value.replace("_", ".")


def is_identifier(value: str) -> bool:
    return bool(IDENTIFIER.fullmatch(value))


class XRoadFault(Problem):
    """A refusal in X-Road's terms (a `Problem`, so the exchange's core refuses and logs it like any other)."""

    def __init__(self, fault: str, message: str, headers: dict | None = None) -> None:
        super().__init__(fault_status(fault), "xroad.fault", message, headers=headers)
        self.fault, self.message = fault, message


def bad_request(message: str) -> XRoadFault:
    return XRoadFault("Client.BadRequest", message)


def fault_status(fault: str) -> int:
    return 500 if fault.startswith("Server.") else 400


def wants_xml(accept: str | None) -> bool:
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in XML_TYPES:
            return True
        if media in ("application/json", "*/*"):
            return False
    return False


def fault_response(fault: str, message: str, accept: str | None, headers: dict | None = None) -> Response:
    detail = request_id_var.get() or ""
    if wants_xml(accept):
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<error><type>{escape(fault)}</type>'
                f'<message>{escape(message)}</message><detail>{escape(detail)}</detail></error>').encode()
        media = "text/xml; charset=utf-8"
    else:
        body = json.dumps({"type": fault, "message": message, "detail": detail}, ensure_ascii=False).encode()
        media = "application/json; charset=utf-8"
    return Response(body, status_code=fault_status(fault), media_type=None,
                    headers={"Content-Type": media, "X-Road-Error": fault, **(headers or {})})


def parse_service_path(raw_path: bytes) -> tuple[list[str], str]:
    """`/r1/{instance}/{class}/{member}/{subsystem}/{service}[/path]` (raw, without the query) → the five
    decoded identifier parts and the decoded rest of the path ("" when there is none)."""
    text = raw_path.decode("latin-1")
    parts = text.split("/", 7)  # "", "r1", five parts, the rest
    if len(parts) < 7 or parts[1] != PROTOCOL or not all(parts[2:7]):
        raise bad_request("Invalid request URI: expected /r1/{instance}/{memberClass}/{memberCode}/"
                          "{subsystemCode}/{serviceCode}[/path] (请求地址不符合 X-Road REST 协议)")
    try:
        ids = [unquote(p, errors="strict") for p in parts[2:7]]
    except UnicodeDecodeError:
        raise bad_request("Invalid percent-encoding in the service id (服务标识编码无效)") from None
    for raw, value in zip(parts[2:7], ids):
        if not is_identifier(value):
            raise bad_request(f"Invalid identifier {raw!r} in the service id: only A-Z a-z 0-9 and '()+,-.=? "
                              "are allowed, and no encoded '/' (标识符含不允许的字符)")
    rest = unquote(parts[7]) if len(parts) == 8 else ""
    return ids, rest


def client_id(headers: list[tuple[bytes, bytes]], instance: str) -> list[str]:
    """The last `X-Road-Client` header's parts: `{instance}/{memberClass}/{memberCode}[/{subsystemCode}]`."""
    values = [v.decode("latin-1") for k, v in headers if k == b"x-road-client"]
    if not values:
        raise bad_request("X-Road-Client header is required (X-Road-Client 必填)")
    raw = values[-1].strip()
    parts = [unquote(p) for p in raw.split("/")]
    if len(parts) not in (3, 4) or not all(is_identifier(p) for p in parts):
        raise bad_request("X-Road-Client must be {instance}/{memberClass}/{memberCode}[/{subsystemCode}] "
                          "in the identifier characters A-Z a-z 0-9 '()+,-.=?")
    if parts[0] != instance:
        raise bad_request(f"Unknown X-Road instance {parts[0]}")
    return parts


def last_client_header(headers: list[tuple[bytes, bytes]]) -> str:
    values = [v.decode("latin-1") for k, v in headers if k == b"x-road-client"]
    return values[-1] if values else ""


def request_hash(method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> str:
    """X-Road-Request-Hash of one request (see the module docstring for what "headers" are)."""
    head = [method.encode("latin-1"), b"\r\n", raw_path]
    if query:
        head += [b"?", query]
    head.append(b"\r\n")
    for k, v in headers:
        if k.lower() not in UNHASHED:
            head += [k, b":", v, b"\r\n"]
    digest = hashlib.sha512(b"".join(head)).digest()
    if body:
        digest = hashlib.sha512(digest + hashlib.sha512(body).digest()).digest()
    return base64.b64encode(digest).decode()
