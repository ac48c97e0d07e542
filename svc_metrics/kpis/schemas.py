from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.validators import FiniteFloat


class TargetOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: FiniteFloat = Field(description="目标值，在该指标单位的合理范围内（百分比 0–100 等） "
                                           "The target, within its unit's range (0–100 for a percentage, …)")
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


class ExchangeCallsRow(BaseModel):
    resource: str | None = Field(description="目录资源编码（未指明资源的调用为 null） Catalogue resource, null for calls naming none")
    calls: int
    refused: int = Field(description="被拒绝的调用（401 / 403 / 429） Calls refused (401 / 403 / 429)")
    refused_rate: float | None = Field(description="拒绝率 % Refused ÷ calls, in %")


class ExchangeCallsOut(BaseModel):
    period: str
    period_kind: str
    from_: datetime = Field(alias="from")
    to: datetime
    calls: int
    refused: int
    refused_rate: float | None
    items: list[ExchangeCallsRow] = Field(description="每个资源的调用量，多者在前 Calls per resource, most first")

    model_config = ConfigDict(populate_by_name=True)
