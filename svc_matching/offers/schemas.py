from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from common.validators import PlaceCode


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchRequest(_In):
    need_ids: list[str] | None = Field(default=None, max_length=20000)
    place_code: PlaceCode | None = Field(default=None, description="只匹配该区域内的需求")


class DeclineBody(_In):
    reason: str | None = Field(default=None, max_length=300, examples=["本周人手不足"])


class CompleteBody(_In):
    hours: float | None = Field(default=None, gt=0, le=24, description="服务时长（小时），志愿者计入时间银行")
    rating: int | None = Field(default=None, ge=1, le=5, description="居民评价 1–5")


class OfferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    need_id: str
    proposal_id: str
    provider_kind: str
    provider_id: str
    rank: int
    cost: int
    status: str
    expires_at: datetime
    created_at: datetime
    responded_at: datetime | None
    completed_at: datetime | None
    hours: float | None
    rating: int | None
    version: int
