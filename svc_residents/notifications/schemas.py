from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["request", "offer", "verification", "warning", "broadcast", "booking", "survey"]


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    category: str
    template: str
    urgency: str
    title: str
    body: str
    subject: str | None = Field(description="相关对象（如诉求编号）")
    language: str
    created_at: datetime
    read_at: datetime | None
    skipped: str | None = Field(description="未经外部渠道发送的原因：opted_out 已退订 / no_channel 无可用渠道 / cap 超过每日上限")


class UnreadOut(BaseModel):
    unread: int


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    outcome: str = Field(description="sent 已发出 / delivered 已送达 / failed 失败 / unknown 回执逾期未到 / skipped 跳过")
    detail: str | None
    at: datetime


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    channels: list[str] = Field(description="渠道计划（依次回退）")
    position: int
    state: str = Field(description="queued 等待 / sending 发送中 / sent 已发出 / delivered 已送达 / failed 失败 / "
                       "unknown 回执逾期未到 / skipped 跳过")
    tries: int
    next_attempt_at: datetime
    last_error: str | None
    attempts: list[AttemptOut] = Field(default_factory=list)


class SendIn(BaseModel):
    """Staff send one templated message to a person in their place (e.g. a verification that needs them)."""

    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(pattern=r"^person:[0-9a-fA-F-]{1,36}$", examples=["person:0190..."],
                           description="person:<居民ID>（须在本人工作范围内）")
    template: str = Field(min_length=1, max_length=48, examples=["verification.needs_resident"])
    variables: dict[str, str | int] = Field(default_factory=dict, max_length=20)
    urgency: Literal["normal", "urgent"] = "normal"


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal["zh", "en"] = "zh"
    opted_out: list[Category] = Field(default_factory=list, max_length=7,
                                      description="退订的消息类别（安全类消息不受影响）")


class SettingsOut(BaseModel):
    language: str
    opted_out: list[str]
    version: int


class NoticeAssignee(BaseModel):
    kind: str = Field(max_length=16)
    id: str = Field(max_length=80)
    name: str | None = Field(default=None, max_length=100)


class NoticeIn(BaseModel):
    """A `notice.` feed row's data: the event's kind and what the words need (ADR 0017). Fields a newer sender
    adds are ignored; a field of the wrong shape is refused naming it (the feed keeps that row pending)."""

    model_config = ConfigDict(extra="ignore")

    event: str = Field(min_length=3, max_length=64, pattern=r"^[a-z_]+\.[a-z_.]+$", examples=["request.dispatched"])
    request_id: str | None = Field(default=None, max_length=36)
    person_id: str | None = Field(default=None, max_length=36)
    person_ids: list[str] = Field(default_factory=list, max_length=1000,
                                  description="一批受通知的居民（问卷邀请：svc_metrics/surveys/notices.py）")
    provider_id: str | None = Field(default=None, max_length=36)
    subject: str | None = Field(default=None, max_length=80)
    community: str | None = Field(default=None, max_length=24)
    grid: str | None = Field(default=None, max_length=24)
    street: str | None = Field(default=None, max_length=24)
    department: str | None = Field(default=None, max_length=32)
    assignee: NoticeAssignee | None = None
    item_code: str | None = Field(default=None, max_length=32)
    item_name: str | None = Field(default=None, max_length=100)
    priority: str | None = Field(default=None, max_length=16)
    escalation_level: str | None = Field(default=None, max_length=16)
    note: str | None = Field(default=None, max_length=1000)
    breaches: list[str] = Field(default_factory=list, max_length=5)
    expires_at: str | None = Field(default=None, max_length=40)
    field: str | None = Field(default=None, max_length=40)
    title: str | None = Field(default=None, max_length=100)
    community_name: str | None = Field(default=None, max_length=100)
    starts_at: datetime | None = Field(default=None, description="预约或活动开始时间（bookings, activities）")


class NoticeOut(BaseModel):
    event_id: str
    stored: int = Field(description="本次新存的消息数（重复投递为 0）")


class StaffContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["grid_worker", "community_staff", "street_staff", "dept_staff", "provider"]
    scope: str = Field(pattern=r"^(grid|community|street|dept|provider):[\w-]{1,64}$",
                       examples=["community:110105001001"], description="该人员令牌上的范围")
    display_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, examples=["13900001111"])
    preferred_channel: Literal["push", "sms", "phone"] | None = None
    active: bool = True
    version: int | None = Field(default=None, ge=1, description="修改时须带当前版本")


class StaffContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: str
    role: str
    scope: str
    display_name: str | None
    phone_masked: str | None
    preferred_channel: str | None
    active: bool
    version: int
    updated_at: datetime

