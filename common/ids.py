"""Time-ordered identifiers (UUIDv7): sortable by creation, index-friendly, unguessable enough for URLs."""
from __future__ import annotations

import uuid6


def new_id() -> str:
    return str(uuid6.uuid7())
