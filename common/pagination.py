"""Cursor pagination: `{items, next_cursor}`; the cursor is an opaque token of the last row's sort key.

Every list endpoint takes `page: PageParams = Depends()` and does the same two steps:

    rows = (await session.execute(page.keyset(select(Offer).where(...), Offer.id))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=OfferOut.model_validate)
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from common.errors import invalid

T = TypeVar("T")
MAX_LIMIT = 200
# What we issue is a few short keys; a longer cursor is not one of ours (and would only cost parsing).
MAX_CURSOR_CHARS = 1024
# What `encode_cursor` writes: URL-safe base64 without padding (declared on the parameter, checked on decoding).
CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"
_CURSOR = re.compile(CURSOR_PATTERN)
# Integer keys are database integers (BIGINT at most).
_INT64 = range(-2 ** 63, 2 ** 63)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor():
    return invalid("cursor", "cursor.invalid", "翻页游标无效，请从第一页重新查询",
                   "Invalid cursor; start again from the first page", where="query")


def decode_cursor(cursor: str | None) -> list[Any] | None:
    """The sort key a cursor carries: a short list of strings and integers. A cursor is opaque but the client
    holds it, so anything else (an empty list, objects, floats) is a 422, never a query that fails later."""
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_CHARS or not _CURSOR.match(cursor):
        raise _bad_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, RecursionError):  # RecursionError: arrays nested deeper than the parser goes
        raise _bad_cursor() from None
    if (not isinstance(values, list) or not 1 <= len(values) <= 4
            or not all(isinstance(v, str) or (type(v) is int and v in _INT64) for v in values)):
        raise _bad_cursor()
    return values


def cursor_key(cursor: str | None, kind: type = str) -> Any:
    """The first sort key of a cursor as the column's type (str ids and codes, int sequence numbers)."""
    values = decode_cursor(cursor)
    if values is None:
        return None
    value = values[0]
    if kind is int:
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit() and len(value) < 19):
            return int(value)
        raise _bad_cursor()
    return str(value)


class PageParams:
    def __init__(self, limit: int = Query(50, ge=1, le=MAX_LIMIT, description="每页条数 (≤ 200)"),
                 cursor: str | None = Query(None, max_length=MAX_CURSOR_CHARS, pattern=CURSOR_PATTERN,
                                            description="上一页返回的 next_cursor")) -> None:
        self.limit = limit
        self.cursor = cursor
        self.after = decode_cursor(cursor)

    def after_key(self, kind: type = str) -> Any:
        """The last row's key from the cursor, as the column's type; None on the first page."""
        return cursor_key(self.cursor, kind)

    def keyset(self, stmt: Any, column: Any, *, descending: bool = False, kind: type = str) -> Any:
        """`stmt` ordered by its unique `column`, after the cursor's key, one row more than the page (so `page`
        can tell whether another follows). `descending` for newest-first lists; `kind` the column's type."""
        after = self.after_key(kind)
        if after is not None:
            stmt = stmt.where(column < after if descending else column > after)
        return stmt.order_by(column.desc() if descending else column).limit(self.limit + 1)

    def page(self, rows: Sequence[Any], *, key: Callable[[Any], Any],
             item: Callable[[Any], Any] | None = None) -> Page:
        """The page of rows fetched with `keyset` (or any query limited to `limit + 1`): at most `limit` items,
        each made by `item`, and the cursor of the last row's `key` when more rows follow."""
        more = len(rows) > self.limit
        rows = list(rows[: self.limit])
        return Page(items=[item(r) for r in rows] if item is not None else rows,
                    next_cursor=encode_cursor(key(rows[-1])) if more else None)
