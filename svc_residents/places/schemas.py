from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.validators import PlaceCode

PlaceLevel = Literal["district", "street", "community", "grid", "building"]


class PlaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: PlaceCode = Field(description="GB/T 2260 区划码加本地后缀", examples=["110101001001001"])
    level: PlaceLevel
    name: str = Field(min_length=1, max_length=100, examples=["第一网格"])
    parent_code: PlaceCode | None = None


class PlaceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    level: PlaceLevel
    name: str
    parent_code: str | None
    created_at: datetime
    version: int


class GridWorkersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[str] = Field(max_length=20, description="该网格的网格员用户标识（整体替换）",
                                examples=[["grid1"]])


class GridWorkersOut(BaseModel):
    grid_code: str
    user_ids: list[str]
