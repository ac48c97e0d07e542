from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.validators import Money, ReachCode

KINDS = ("deliberation_result", "policy", "fund", "service_list", "staffing")


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineIn(In):
    direction: Literal["income", "expense"]
    item: str = Field(min_length=1, max_length=200)
    amount: Money


class NoticeIn(In):
    kind: Literal[KINDS]  # type: ignore[valid-type]
    title: str = Field(min_length=2, max_length=200)
    body: str = Field(min_length=1, max_length=20000)
    scope_code: ReachCode = Field(description="公示范围：社区、网格或楼栋代码")
    topic_id: str | None = Field(default=None, max_length=36, description="议事结果公示：所公示的议题")
    publish_from: datetime
    publish_until: datetime
    objection_until: datetime | None = Field(default=None, description="异议期截止；为空表示不设异议期")
    lines: list[LineIn] = Field(default_factory=list, max_length=500, description="资金公示的收支明细")
    income_total: Money | None = None
    expense_total: Money | None = None


class WithdrawIn(In):
    reason: str = Field(min_length=2, max_length=500)


class ObjectionIn(In):
    text: str = Field(min_length=2, max_length=2000)


class AnswerIn(In):
    answer: str = Field(min_length=2, max_length=5000)


class NoticeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    title: str
    body: str
    scope_code: str
    topic_id: str | None
    publish_from: datetime
    publish_until: datetime
    objection_until: datetime | None
    status: str
    withdrawn_reason: str | None
    withdrawn_at: datetime | None
    lines: list[dict]
    income_total: Decimal | None
    expense_total: Decimal | None
    extra: dict
    created_at: datetime


class ObjectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    notice_id: str
    text: str
    at: datetime
    answer: str | None
    answered_at: datetime | None
