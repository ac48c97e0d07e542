from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.validators import BuildingCode, GridCode


class HouseholdCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(min_length=1, max_length=200, examples=["和平街道幸福路1号楼101"])
    grid_code: GridCode = Field(description="所属网格编码（15 位）", examples=["110105001001001"])
    building_code: BuildingCode | None = Field(default=None, description="楼栋编码（网格编码加后缀）")


class HouseholdUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="当前版本号；不一致时返回 409")
    address: str | None = Field(default=None, min_length=1, max_length=200)
    building_code: BuildingCode | None = None
    head_person_id: str | None = Field(default=None, max_length=36, description="户主（须为本户成员）")


class HouseholdOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    address: str
    grid_code: str
    building_code: str | None
    community_code: str
    head_person_id: str | None
    created_at: datetime
    updated_at: datetime
    version: int
