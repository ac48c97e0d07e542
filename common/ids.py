"""Time-ordered identifiers (UUIDv7): sortable by creation, index-friendly, unguessable enough for URLs."""
from __future__ import annotations

import uuid_utils


def new_id() -> str:
    # uuid-utils (Rust) makes a v7 id in ~0.2 µs, monotonic within the process; uuid6 took ~2.7 µs, and an
    # intake makes about eight ids across the services it passes through
    return str(uuid_utils.uuid7())
