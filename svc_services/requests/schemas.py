from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from common.validators import GridCode

from svc_services.appointments.schemas import AppointmentOut
from svc_services.codes import AssigneeKind, Channel, Priority
from svc_services.materials.schemas import MaterialOut

MAX_DESCRIPTION = 4000


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float | None = Field(default=None, ge=-90, le=90)
    long: float | None = Field(default=None, ge=-180, le=180)
    grid: GridCode | None = Field(default=None, description="网格编码（15 位）")
    address: str | None = Field(default=None, max_length=200)


class RequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: str = Field(min_length=1, max_length=32, examples=["YL-ZC-001"])
    channel: Channel
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION, description="诉求描述（纯文本，≤ 4000 字）")
    attributes: dict[str, Any] = Field(default_factory=dict)
    location: Location = Field(default_factory=Location)
    person_id: str | None = Field(default=None, max_length=36,
                                  description="代为登记时的居民编号（居民本人与代办员由令牌确定）")
    priority: Priority | None = Field(default=None, description="工作人员可指定；紧急事项一律为 emergency")
    media_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$",
                                  description="照片等附件的链接（Open311 media_url，公开可见）")


class Assignee(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: AssigneeKind
    id: str = Field(min_length=1, max_length=80, description="网格员用户 / 部门代码 / 服务主体编号")
    name: str | None = Field(default=None, max_length=100)


TransitionAction = Literal["accept", "reject", "dispatch", "claim", "return", "start", "resolve", "rate", "close",
                           "reopen", "escalate", "cancel", "merge"]


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: TransitionAction
    note: str | None = Field(default=None, max_length=2000)
    version: int | None = Field(default=None, ge=1, description="期望的当前版本（或用 If-Match）")
    assignee: Assignee | None = Field(default=None, description="dispatch 时必填（或给出 candidate_rank）")
    candidate_rank: int | None = Field(default=None, ge=1, le=50,
                                       description="dispatch 时可选：采用最近一次推荐（GET …/candidates）中的第 n 名")
    rating: int | None = Field(default=None, description="rate 时必填，1–5")
    comment: str | None = Field(default=None, max_length=1000)
    into: str | None = Field(default=None, max_length=36, description="merge 时必填：保留的请求编号")


class TimelineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    action: str
    from_state: str | None
    to_state: str
    actor: str
    role: str
    acting_for: str | None
    note: str | None
    data: dict[str, Any]
    occurred_at: datetime


class DuplicateOut(BaseModel):
    id: str
    match: Literal["distance", "grid"] = Field(
        default="distance", description="distance：两者都有经纬度，相距不超过 50 米；grid：同一网格（有一方只给了网格）")
    distance_m: float | None = Field(default=None, description="相距米数（match=distance 时）")
    grid: str | None = None
    state: str
    created_at: datetime


class RequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    item_code: str
    item_version: int
    category: str
    department: str
    channel: str
    person_id: str | None
    submitted_by: str
    submitted_role: str
    proxy_user: str | None
    description: str
    attributes: dict[str, Any]
    address: str | None
    lat: float | None
    long: float | None
    grid: str
    community: str
    priority: str
    state: str
    state_name: str
    version: int
    escalation_level: str
    assignee_kind: str | None
    assignee_id: str | None
    overdue: bool
    merged_into: str | None
    rating: int | None
    rating_comment: str | None
    media_url: str | None = None
    response_due_at: datetime | None
    start_due_at: datetime | None
    resolution_due_at: datetime | None
    created_at: datetime
    accepted_at: datetime | None
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    allowed_actions: list[str] = Field(default_factory=list, description="当前角色可执行的操作")
    timeline: list[TimelineOut] | None = None
    materials: list[MaterialOut] | None = Field(default=None, description="所需材料（详情与受理时给出）")
    appointment: AppointmentOut | None = Field(default=None, description="服务预约：当前的预约（详情给出；历史见全程记录）")
    possible_duplicates: list[DuplicateOut] | None = Field(
        default=None, description="提交时：同一事项 72 小时内尚未办结的诉求，50 米内（有经纬度时）或同一网格内（只有网格时），"
                                 "仅列出调用者可查看的")
