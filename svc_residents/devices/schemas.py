from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Kind = Literal["bracelet", "smoke_sensor", "door_sensor"]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="设备序列号")
    kind: Kind = Field(description="bracelet 智能手环 / smoke_sensor 烟感 / door_sensor 门磁")
    member: str = Field(min_length=1, max_length=64, description="代为上报的物联平台（交换成员编码）")
    person_id: str | None = Field(default=None, max_length=36)
    household_id: str | None = Field(default=None, max_length=36)
    heartbeat_minutes: int = Field(default=30, ge=1, le=24 * 60)
    inactivity_hours: int | None = Field(default=None, ge=1, le=24 * 7,
                                         description="独居老人：超过该时长无活动即发起关怀探访")


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    person_id: str | None = Field(default=None, max_length=36)
    household_id: str | None = Field(default=None, max_length=36)
    active: bool | None = None
    heartbeat_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    inactivity_hours: int | None = Field(default=None, ge=1, le=24 * 7)


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    member: str
    person_id: str | None
    household_id: str | None
    grid_code: str | None
    heartbeat_minutes: int
    inactivity_hours: int | None
    active: bool
    last_heartbeat_at: datetime | None
    last_activity_at: datetime | None
    version: int


class DeviceEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=64, description="设备侧事件编号（重发同一编号只处理一次）")
    type: Literal["alarm", "heartbeat", "activity"]
    occurred_at: AwareDatetime | None = Field(default=None, description="设备时间（仅记录；以平台时钟为准）")


class DeviceEventOut(BaseModel):
    device_id: str
    type: str
    alarm_id: str | None = Field(default=None, description="报警编号（同一设备事件重发时不变）")
    request_id: str | None = Field(default=None, description="报警转成的紧急诉求编号（由 svc_services 立案）")


class CheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    device_id: str
    kind: str
    grid_code: str
    person_id: str | None
    state: str
    raised_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    note: str | None


class CheckClose(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=200, examples=["已上门，老人安好；手环电量耗尽已更换"])
