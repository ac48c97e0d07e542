"""What Open311's routes read themselves, declared in the OpenAPI document with the constraints the code enforces
(issue 31): the POST's form (form-encoded, or multipart/form-data with GeoReport's `media` photo) and the query of
the request documents. The router reads them itself so that a bad one is answered in GeoReport's error list; the
patterns here are the ones it checks (`STATUS`, `date`, `extensions`), so the document and the code cannot
disagree.

A rule across fields no schema here states: a window whose `end_date` is before its `start_date` is refused (400),
named in tests/fuzz/exceptions.py.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from common.validators import GRID_CODE_PATTERN, RFC3339_DATETIME
from svc_services.requests.schemas import MAX_DESCRIPTION

STATUS_PATTERN = "^(open|closed)(,(open|closed))*$"
STATUS = re.compile(STATUS_PATTERN)
ATTRIBUTE_FIELD = r"^attribute\[([^\]]+)\](\[\])?$"  # attribute[code], attribute[code][] for a multivaluelist
GRID = re.compile(GRID_CODE_PATTERN)


class BadQuery(ValueError):
    """A query parameter outside its declared schema; the message is the Open311 error's description."""


def date(params, name: str) -> datetime | None:
    """A W3C (RFC 3339) date-time with its offset, as declared (`format: date-time`); a `+` sent unencoded (read
    as a space) is taken as the `+` it was."""
    raw = params.get(name)
    if raw is None:
        return None
    value = raw.replace(" ", "+")
    try:
        parsed = datetime.fromisoformat(value.upper()) if RFC3339_DATETIME.fullmatch(value) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BadQuery(f"{name}: not a W3C datetime with its offset (e.g. 2026-03-01T00:00:00+08:00)")
    return parsed


def extensions(params) -> bool:
    raw = params.get("extensions")
    if raw not in (None, "true", "false"):
        raise BadQuery("extensions: true or false")
    return raw == "true"


def statuses(params) -> list[str] | None:
    raw = params.get("status")
    if raw is None:
        return None
    if not STATUS.fullmatch(raw):
        raise BadQuery("status: use open, closed or open,closed")
    return sorted(set(raw.split(",")))


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


EXTENSIONS = _query("extensions", "true：附带时间线（动作、角色与时间）the timeline too (actions, roles, times)",
                    {"type": "boolean"})
LIST_QUERY = [
    _query("service_request_id", "逗号分隔的请求编号（给出时其余条件不适用）comma-separated ids; with them the other "
                                 "filters do not apply", {"type": "string"}),
    _query("service_code", "逗号分隔的事项编码 comma-separated service codes", {"type": "string"}),
    _query("status", "open、closed 或 open,closed", {"type": "string", "pattern": STATUS_PATTERN}),
    _query("start_date", "最早提交时间（W3C datetime，带时区）earliest requested_datetime",
           {"type": "string", "format": "date-time"}),
    _query("end_date", "最晚提交时间（不早于 start_date；默认窗口 90 天）latest requested_datetime (not before "
                       "start_date; the default window is 90 days)", {"type": "string", "format": "date-time"}),
    EXTENSIONS,
]

_FORM_FIELDS: dict[str, Any] = {
    "api_key": {"type": "string", "description": "网关签发的访问令牌（或 Authorization: Bearer）a gateway-issued "
                                                 "access token (or Authorization: Bearer)"},
    "service_code": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": r"\S",
                     "description": "事项编码（services 文档）the service's code"},
    "lat": {"type": "number", "minimum": -90, "maximum": 90},
    "long": {"type": "number", "minimum": -180, "maximum": 180},
    "address_string": {"type": "string", "maxLength": 200},
    "address_id": {"type": "string", "pattern": GRID_CODE_PATTERN, "description": "网格编码（15 位）the grid code"},
    "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
    "media_url": {"type": "string", "maxLength": 500, "pattern": r"^https?://\S+$"},
    "account_id": {"type": "string", "maxLength": 36, "description": "代为登记时的居民编号 the person, for staff and "
                                                                     "member systems"},
    **{name: {"type": "string", "description": "不保存：提交人由令牌确定 not stored: the token says who"}
       for name in ("first_name", "last_name", "email", "phone", "device_id")},
}


def _form(extra: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["service_code"], "properties": {**_FORM_FIELDS, **extra},
            # the place: lat and long together, or the grid code
            "anyOf": [{"required": ["lat", "long"]}, {"required": ["address_id"]}],
            "patternProperties": {ATTRIBUTE_FIELD: {"type": "string"}}}


# a submission the seeded district takes as it stands (the item's required attribute included)
_POST_EXAMPLE = {"service_code": "YL-ZC-001", "lat": 39.9211, "long": 116.4431, "description": "老人助餐",
                 "attribute[meal_time]": "lunch"}
POST_BODY = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": _form({}), "example": _POST_EXAMPLE},
    "multipart/form-data": {"schema": _form({"media": {
        "type": "string", "format": "binary", "description": "一张照片（JPEG、PNG、WebP）a photo"}}),
        "example": _POST_EXAMPLE}}}}
SUBMITTED = {"type": "array", "items": {"type": "object", "required": ["service_request_id"], "properties": {
    "service_request_id": {"type": "string"}, "service_notice": {"type": "string"},
    "account_id": {"type": ["string", "null"]}}}}
POST_RESPONSES: dict[int | str, dict[str, Any]] = {201: {
    "description": "已提交；同一 Idempotency-Key 重放时仍以 201 答复首次的结果（Idempotency-Replayed: true，首次为 "
                   "false），从不答 200 submitted; a replay of its Idempotency-Key answers the first one's with 201 "
                   "again (Idempotency-Replayed: true, the first keyed answer false), never 200",
    "content": {"application/json": {"schema": SUBMITTED}},
    "headers": {"Idempotency-Replayed": {
        "description": "仅在带 Idempotency-Key 时 only under an Idempotency-Key",
        "schema": {"type": "string", "enum": ["true", "false"]}}}}}
