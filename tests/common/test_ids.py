"""Identifiers: UUIDv7, unique and in creation order (the indexes rely on it)."""
from __future__ import annotations

import uuid

from common.ids import new_id


def test_ids_are_v7_unique_and_ordered_by_creation():
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # monotonic within the process, also within one millisecond
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and str(parsed) == ids[0]
