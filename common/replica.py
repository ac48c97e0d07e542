"""Rows a service keeps of another service's records, fed by its outbox (ADR 0007): each row has `version`,
`removed` and `updated_at`, keyed by the record's id. A snapshot older than (or the same as) what the row holds is
ignored: applying it would go back in time (a retry after a newer snapshot, a second relay overtaking the first).
Writes by ops carry no version and always apply."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


def is_stale(row: Any | None, version: int | None) -> bool:
    return version is not None and row is not None and row.version is not None and version <= row.version


async def upsert(session: AsyncSession, model: type, key: str, values: dict[str, Any], now: datetime, *,
                 version: int | None = None) -> Any:
    """Replace the row's `values` (locked), unless `version` is stale: then the stored row comes back unchanged."""
    row = await session.get(model, key, with_for_update=True)
    if is_stale(row, version):
        return row
    if row is None:
        row = model(**{_key(model): key})
        session.add(row)
    for name, value in {**values, "removed": False, "updated_at": now}.items():
        setattr(row, name, value)
    if version is not None:
        row.version = version
    await session.flush()
    return row


async def remove(session: AsyncSession, model: type, key: str, cleared: dict[str, Any], now: datetime, *,
                 version: int | None = None) -> None:
    """The record is gone at its source. With a feed `version` a tombstone stays (`cleared` values, only the
    version), so an older snapshot cannot bring it back; without one (ops) the row is deleted."""
    row = await session.get(model, key, with_for_update=True)
    if version is None:
        if row is not None:
            await session.delete(row)
        return
    if is_stale(row, version):
        return
    if row is None:
        row = model(**{_key(model): key})
        session.add(row)
    for name, value in {**cleared, "removed": True, "version": version, "updated_at": now}.items():
        setattr(row, name, value)
    await session.flush()


def _key(model: type) -> str:
    (column,) = model.__table__.primary_key.columns
    return column.key
