from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RegistrationStatus = Literal["pending", "confirmed", "refused"]


class RegistrationOut(BaseModel):
    id: str
    status: RegistrationStatus = Field(description="pending 待核实 / confirmed 已确认（档案迁入该户） / refused 未予确认")
    detail: str = Field(description="说明")
    household_id: str
    name: str = Field(description="登记时填写的姓名")
    residency_type: str
    relation_to_head: str | None
    is_head: bool
    person_id: str | None = Field(default=None, description="居民档案编号：仅对能查看该档案的工作人员给出")
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    note: str | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=200, description="说明（可选）")
