from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from common.validators import CommunityCode, GridCode

Duty = Literal["backup_worker", "community_duty", "street_duty"]
UserId = Field(default=None, min_length=1, max_length=64, description="值班人员的工作账号（可收到 App 推送）")
PhoneField = Field(default=None, min_length=11, max_length=20, description="值班电话（加密保存，输出打码）")


class ShiftCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    place_code: str = Field(min_length=6, max_length=24,
                            description="备岗网格员填网格代码，社区值班电话填社区代码，街道值班领导填街道代码")
    duty: Duty = Field(description="backup_worker 备岗网格员 / community_duty 社区值班电话 / street_duty 街道值班领导")
    name: str = Field(min_length=1, max_length=50)
    user_id: str | None = UserId
    phone: str | None = PhoneField
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class ShiftUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    name: str | None = Field(default=None, min_length=1, max_length=50)
    user_id: str | None = UserId
    phone: str | None = PhoneField
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None


class ShiftOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    place_code: str
    duty: str
    name: str
    user_id: str | None
    phone_masked: str | None
    starts_at: datetime
    ends_at: datetime
    version: int


class EmergencyIn(BaseModel):
    """svc_services' `emergency.changed` snapshot of an emergency request (ADR 0007): where, for whom, its state."""

    model_config = ConfigDict(extra="forbid")

    state: str = Field(min_length=1, max_length=16)
    grid: GridCode
    community: CommunityCode
    person_id: str | None = Field(default=None, max_length=36)
    item_code: str = Field(min_length=1, max_length=32)
    channel: str = Field(min_length=1, max_length=24)
    submitted_at: AwareDatetime
    version: int = Field(ge=1, le=2**31 - 1)


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=200, examples=["已联系老人，正赶往现场"])


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    step: int
    duty: str
    targets: list[dict]
    channels: list[str]
    outcome: str
    made_at: datetime


class CalloutOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    request_id: str
    grid_code: str
    community_code: str
    source: str
    state: str
    step: int
    next_step_at: datetime | None
    alarm_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledged_role: str | None
    version: int
    attempts: list[AttemptOut] = Field(default_factory=list)
