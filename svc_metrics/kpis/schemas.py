from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TargetOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float
    source: str = Field(min_length=1, max_length=100, description="依据（文件、会议纪要等） Where the target comes from")
    note: str | None = Field(default=None, max_length=300)


class TargetOverrideOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    scope: str
    value: float
    source: str
    note: str | None
    updated_by: str
    updated_at: datetime
