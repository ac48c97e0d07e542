from __future__ import annotations

from datetime import datetime
from typing import Literal, get_type_hints

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model, field_validator

from gateway.exchange.audit import Exchange

SharingClass = Literal["unconditional", "conditional", "not_shared"]
GrantStatus = Literal["pending", "approved", "refused", "revoked"]

SHARING_LABELS = {"unconditional": "无条件共享", "conditional": "有条件共享", "not_shared": "不予共享"}


class FieldOut(BaseModel):
    path: str
    label: str
    grade: Literal["core", "important", "general"]
    personal: bool
    sensitive: bool
    mask: str | None = None
    reviewed: bool = Field(default=True, description="false：未标注、按默认从严分级（个人信息、重要）待提供方确认 "
                                                     "not annotated; graded strictly by default until reviewed")


class ResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    owner: str
    name: str
    description: str
    sharing_class: SharingClass
    sharing_label: str = ""
    service: str
    path_prefix: str
    methods: list[str]
    fields: list[FieldOut]
    xroad_member_class: str
    xroad_subsystem: str
    xroad_service: str


def _strip(v: str) -> str:
    return v.strip() if isinstance(v, str) else v


class GrantApply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource: str = Field(min_length=1, max_length=64, examples=["minzheng.assistance"])
    purpose: str = Field(min_length=1, max_length=500, description="用途（必填）",
                         examples=["核验低保身份，为老年助餐补贴办理免交材料"])
    fields: list[str] | None = Field(default=None, max_length=100, description="申请的字段范围；省略为全部字段")
    expires_at: AwareDatetime | None = Field(default=None, description="希望的有效期截止时间")

    _strip_purpose = field_validator("purpose", mode="before")(_strip)


class GrantApprove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: list[str] = Field(max_length=100, description="批准的字段范围")
    expires_at: AwareDatetime = Field(description="授权有效期截止时间")


class GrantRefuse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="不予批准的理由（必填）")

    _strip_reason = field_validator("reason", mode="before")(_strip)


class GrantRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


class GrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    resource: str
    owner: str
    consumer: str
    applicant_user: str
    purpose: str
    status: GrantStatus
    requested_fields: list[str] | None
    requested_expires_at: datetime | None
    fields: list[str] | None
    expires_at: datetime | None
    reason: str | None
    applied_at: datetime
    check_due_at: datetime
    reply_due_at: datetime
    checked_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    revoked_at: datetime | None
    check_overdue: bool = False
    reply_overdue: bool = False
    overdue: bool = False
    live: bool = False


# A log entry is the call as the forwarder recorded it (audit.Exchange, one field list) with its place in the chain.
LogEntryOut = create_model(
    "LogEntryOut", __config__=ConfigDict(from_attributes=True), seq=(int, ...),
    **{name: (kind, ...) for name, kind in get_type_hints(Exchange).items()},
    prev_hash=(str, ...), hash=(str, ...),
)
