"""Cursor pagination: `{items, next_cursor}`; the cursor is an opaque token of the last row's sort key."""
from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from common.errors import invalid

T = TypeVar("T")
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list):
            raise ValueError
        return values
    except (ValueError, json.JSONDecodeError):
        raise invalid("cursor", "cursor.invalid", "翻页游标无效，请从第一页重新查询",
                      "Invalid cursor; start again from the first page", where="query") from None


class PageParams:
    def __init__(self, limit: int = Query(50, ge=1, le=MAX_LIMIT, description="每页条数 (≤ 200)"),
                 cursor: str | None = Query(None, description="上一页返回的 next_cursor")) -> None:
        self.limit = limit
        self.cursor = cursor
        self.after = decode_cursor(cursor)
