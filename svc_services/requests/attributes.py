"""Validation of a request's Open311 attributes against the item version it is made against."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from common.errors import Problem, field_error

MAX_STRING = 200
MAX_TEXT = 4000


def validate_attributes(definitions: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """Return the cleaned values, or raise one 422 naming every bad attribute (`attributes.<code>`)."""
    errors: list[dict[str, Any]] = []
    known = {d["code"]: d for d in definitions}
    clean: dict[str, Any] = {}
    for code in values:
        if code not in known:
            errors.append(field_error(f"attributes.{code}", "attribute.unknown", "该事项没有此属性",
                                      "This item has no such attribute"))
    for d in definitions:
        code, dtype = d["code"], d["datatype"]
        field = f"attributes.{code}"
        value = values.get(code)
        if value is None or (isinstance(value, (str, list)) and len(value) == 0):
            if d.get("required"):
                errors.append(field_error(field, "attribute.required", f"必填项：{d['description']}",
                                          f"Required: {d['description']}"))
            continue
        keys = [v["key"] for v in d.get("values") or []]
        if dtype in ("string", "text"):
            limit = MAX_STRING if dtype == "string" else MAX_TEXT
            if not isinstance(value, str):
                errors.append(field_error(field, "attribute.type", "应为文字", "Must be a string"))
            elif len(value) > limit:
                errors.append(field_error(field, "attribute.too_long", f"不能超过 {limit} 字",
                                          f"At most {limit} characters"))
            else:
                clean[code] = value
        elif dtype == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors.append(field_error(field, "attribute.type", "应为数字", "Must be a number"))
            else:
                clean[code] = value
        elif dtype == "datetime":
            parsed = None
            if isinstance(value, str):
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError:
                    parsed = None
            if parsed is None or parsed.tzinfo is None:
                errors.append(field_error(field, "attribute.type", "应为带时区的 ISO-8601 日期时间",
                                          "Must be an ISO-8601 datetime with offset"))
            else:
                clean[code] = parsed.isoformat()
        elif dtype == "singlevaluelist":
            if not isinstance(value, str) or value not in keys:
                errors.append(field_error(field, "attribute.value", f"应为以下之一：{'、'.join(keys)}",
                                          f"Must be one of: {', '.join(keys)}"))
            else:
                clean[code] = value
        elif dtype == "multivaluelist":
            if not isinstance(value, list) or not all(isinstance(v, str) and v in keys for v in value):
                errors.append(field_error(field, "attribute.value", f"应为以下取值组成的列表：{'、'.join(keys)}",
                                          f"Must be a list of: {', '.join(keys)}"))
            else:
                clean[code] = list(dict.fromkeys(value))
    if errors:
        fields = "、".join(e["field"] for e in errors[:5])
        raise Problem(422, "validation_failed", (f"以下属性有误：{fields}", f"Invalid attributes: {fields}"),
                      errors=errors)
    return clean
