"""The grid register's API models."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GridIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    lat: float | None = Field(default=None, ge=-90, le=90)
    long: float | None = Field(default=None, ge=-180, le=180)


class GridOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    community_code: str
    lat: float | None
    long: float | None
