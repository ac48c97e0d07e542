"""Get one object or answer 404: the idiom of every `GET /x/{id}` and of every change to one object.

    offer = await get_or_404(session, Offer, offer_id, NotFound("offer.not_found", NOT_FOUND),
                             visible=lambda o: may_see_offer(session, principal, o))

An object outside the caller's reach answers exactly as an unknown one (OWASP API1: no probing for ids).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import Problem

T = TypeVar("T")


async def get_or_404(session: AsyncSession, model: type[T], key: Any, not_found: Problem, *,
                     visible: Callable[[T], Any] | None = None, for_update: bool = False) -> T:
    """The row of `model` with primary key `key`, when it exists and `visible(row)` (sync or async) holds;
    `not_found` raised otherwise. `for_update` locks the row (PostgreSQL) for a versioned change."""
    obj = await session.get(model, key, with_for_update=for_update) if key is not None else None
    if obj is None:
        raise not_found
    if visible is not None:
        seen = visible(obj)
        if inspect.isawaitable(seen):
            seen = await seen
        if not seen:
            raise not_found
    return obj
