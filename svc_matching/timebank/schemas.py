from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from common.validators import CommunityCode

Unit = Literal["minute", "point"]
# What a credit was earned for (participation.recorded `activity`): 议事 council, 志愿服务 volunteer service,
# 社区活动 community activity, 入户调研/问卷 survey, 其他 other.
Activity = Literal["council", "volunteer_service", "community_activity", "survey", "other"]
PostingId = Field(min_length=1, max_length=200, description="客户端记账编号（幂等键）", examples=["kiosk-20261123-0001"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EntryIn(_In):
    account_id: str
    amount: int = Field(description="正数记入（贷），负数转出（借）")


class PostingCreate(_In):
    posting_id: str = PostingId
    unit: Unit
    entries: list[EntryIn] = Field(min_length=2, max_length=20)
    memo: str | None = Field(default=None, max_length=300)
    reference: str | None = Field(default=None, max_length=64)


class CreditCreate(_In):
    posting_id: str = PostingId
    person_id: str
    community: CommunityCode
    unit: Unit = "point"
    amount: int = Field(gt=0, le=1_000_000)
    memo: str | None = Field(default=None, max_length=300, examples=["参加居民议事会"])
    activity: Activity | None = Field(default=None, description="参与的活动类型；默认：时长为志愿服务，积分为社区活动")
    reference: str | None = Field(default=None, max_length=64)


class RedemptionCreate(_In):
    posting_id: str = PostingId
    account_id: str
    community: CommunityCode
    amount: int = Field(gt=0, le=1_000_000)
    memo: str | None = Field(default=None, max_length=300, examples=["兑换助浴服务一次"])
    reference: str | None = Field(default=None, max_length=64, description="兑换的服务编号等")


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    owner_kind: str
    owner_id: str
    unit: str
    kind: str
    allow_negative: bool
    balance: int
    created_at: datetime


class EntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    posting_id: str
    account_id: str
    amount: int
    balance_after: int
    created_at: datetime


class PostingOut(BaseModel):
    id: str
    posting_id: str
    kind: str
    unit: str
    memo: str | None
    reference: str | None
    created_at: datetime
    entries: list[EntryOut]


class StatementLine(BaseModel):
    entry_id: int
    posting_id: str
    client_posting_id: str
    kind: str
    memo: str | None
    amount: int
    balance_after: int
    created_at: datetime
