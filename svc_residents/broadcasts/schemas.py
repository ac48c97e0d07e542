from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from svc_residents.codes import TagCode


class BroadcastCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=60, examples=["停水通知"])
    text: str = Field(min_length=1, max_length=500, examples=["因管道检修，12月8日 9:00–17:00 幸福一网格停水，请提前储水。"])
    place_code: str = Field(min_length=12, max_length=24, description="网格、楼栋或社区代码")
    group: TagCode | None = Field(default=None, description="只发给该特殊群体（如 living_alone 独居老人）")


class ChannelReport(BaseModel):
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    unknown: int = Field(default=0, description="交付后未等到回执（回执期限已过） no receipt by the deadline")
    skipped: int = 0


class BroadcastOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    text: str
    place_code: str
    place_level: str
    group_code: str | None
    sender: str
    state: str
    audience: int
    handed: int
    created_at: datetime
    sent_at: datetime | None


class BroadcastReport(BroadcastOut):
    messages: int = 0                       # inbox entries made
    read: int = 0
    not_sent_outside: dict[str, int] = Field(default_factory=dict)  # opted_out / no_channel / cap
    channels: dict[str, ChannelReport] = Field(default_factory=dict)
