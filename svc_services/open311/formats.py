"""Open311 GeoReport v2 wire formats: the same documents as JSON or XML, and errors as `{code, description}` lists.

XML follows the spec's shapes: a root element (`services`, `service_requests`, `errors`, …) holding one child per
list item; nested lists get a singular child tag (`attributes/attribute`, `values/value`, …).
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

from fastapi.responses import Response

from common.openapi_contract import OPEN311_FORMATS

FORMATS = OPEN311_FORMATS
MEDIA = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
# list element -> tag of each member
SINGULAR = {"services": "service", "service_requests": "request", "errors": "error", "attributes": "attribute",
            "values": "value", "endpoints": "endpoint", "formats": "format", "timeline": "entry",
            "discovery": "discovery"}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _fill(el: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _fill(ET.SubElement(el, k), v)
    elif isinstance(value, list):
        tag = SINGULAR.get(el.tag, "item")
        for v in value:
            _fill(ET.SubElement(el, tag), v)
    else:
        el.text = _text(value)


def to_xml(root: str, body: Any) -> bytes:
    el = ET.Element(root)
    _fill(el, body)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(el, encoding="utf-8", xml_declaration=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def render(fmt: str, root: str, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`body` is a list (most documents) or a dict (discovery, service definition); `root` names the XML root."""
    if fmt == "xml":
        content = to_xml(root, body)
    else:
        content = json.dumps(body, ensure_ascii=False, default=_json_default).encode()
    return Response(content, status_code=status, media_type=MEDIA.get(fmt, MEDIA["json"]), headers=headers)


def errors(fmt: str, status: int, items: list[tuple[int, str]], headers: dict[str, str] | None = None) -> Response:
    """Open311 errors: `[{"code": <status>, "description": "..."}]` / `<errors><error>…</error></errors>`."""
    body = [{"code": code, "description": description} for code, description in items]
    return render(fmt if fmt in FORMATS else "json", "errors", body, status, headers)
