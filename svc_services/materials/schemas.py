from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class MaterialOut(BaseModel):
    """A required material of a request: fetched (with source and time), pending (retry), awaiting_upload,
    uploaded (a file, to review), verified, rejected (with `review_reason`), not_applicable. `data` (the department's answer) is shown to staff and to the person only."""

    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    source: str
    department: str | None
    required: bool
    status: str
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None
    fetched_at: datetime | None
    fetched_from: dict[str, Any] | None
    data: dict[str, Any] | None
    attachment_id: str | None = None
    reviewed_at: datetime | None = None
    review_reason: str | None = None
