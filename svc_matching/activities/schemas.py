from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.validators import AreaCode, CommunityOrGridCode, Instant


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActivityCreate(_In):
    title: str = Field(min_length=1, max_length=200, examples=["老年人智能手机课堂"])
    category: Literal["culture", "education", "health", "sports", "volunteer", "other"]
    description: str | None = Field(default=None, max_length=4000)
    organiser_kind: Literal["community", "organisation", "volunteer_team"]
    organiser_id: str | None = Field(default=None, max_length=36, description="社会组织或志愿队的编号")
    place_code: CommunityOrGridCode = Field(description="举办地（社区或网格）")
    eligible_scope: AreaCode | None = Field(default=None, description="可报名居民范围（默认举办社区）")
    venue_resource_id: str | None = Field(default=None, max_length=36)
    venue: str | None = Field(default=None, max_length=200)
    starts_at: Instant
    ends_at: Instant
    capacity: int = Field(ge=1, le=100000)
    min_age: int | None = Field(default=None, ge=0, le=150)
    max_age: int | None = Field(default=None, ge=0, le=150)
    groups: list[str] = Field(default_factory=list, max_length=20, description="限以下特殊群体之一")
    points: int = Field(default=0, ge=0, le=1000, description="签到积分")
    volunteer_minutes: int | None = Field(default=None, ge=1, le=1440, description="志愿者时长（默认活动时长）")

    @model_validator(mode="after")
    def _order(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.min_age is not None and self.max_age is not None and self.max_age < self.min_age:
            raise ValueError("max_age below min_age")
        if self.organiser_kind != "community" and not self.organiser_id:
            raise ValueError("organiser_id is required for an organisation or volunteer team")
        return self


class ActivityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    category: str
    description: str | None
    organiser_kind: str
    organiser_id: str | None
    place_code: str
    eligible_scope: str
    venue_resource_id: str | None
    venue: str | None
    starts_at: datetime
    ends_at: datetime
    capacity: int
    taken: int
    min_age: int | None
    max_age: int | None
    groups: list[str]
    points: int
    volunteer_minutes: int | None
    status: str
    version: int


class StatusBody(_In):
    status: Literal["cancelled"]
    version: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=300)


class SignupCreate(_In):
    person_id: str | None = Field(default=None, max_length=36, description="工作人员代报名时填写")
    role: Literal["participant", "volunteer"] = "participant"
    age: int | None = Field(default=None, ge=0, le=150, description="年龄（活动限年龄时必填，签到时核验）")
    groups: list[str] = Field(default_factory=list, max_length=20, description="所属特殊群体（活动限群体时）")
    waitlist: bool = Field(default=True, description="名额已满时排队候补")


class CheckinCreate(_In):
    person_id: str = Field(min_length=1, max_length=36)


class SignupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    activity_id: str
    person_id: str
    role: str
    state: str
    checked_in_at: datetime | None
    posting_id: str | None
    version: int
    created_at: datetime
