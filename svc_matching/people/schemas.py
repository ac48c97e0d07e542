from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from svc_matching.geo import HHMM, ByDay, Latitude, Longitude, PlaceCode, TermCode

Priority = Literal["emergency", "urgent", "normal"]
Source = Literal["request", "survey", "online", "council", "staff"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowIn(_In):
    byday: ByDay
    opens_at: HHMM
    closes_at: HHMM


class VolunteerCreate(_In):
    person_id: str = Field(min_length=1, max_length=36)
    name: str = Field(min_length=1, max_length=100, examples=["陈静"])
    skills: list[TermCode] = Field(min_length=1, max_length=20, description="技能（服务类别）")
    availability: list[WindowIn] = Field(default_factory=list, max_length=50,
                                         description="每周可服务时段（北京时间）；为空表示时间不限")
    max_load: int = Field(ge=0, le=100, description="同时承接的最大任务数，不得为负")
    latitude: Latitude
    longitude: Longitude
    place_code: PlaceCode | None = None
    service_radius_m: float | None = Field(default=None, gt=0, le=50_000)


class VolunteerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    person_id: str
    name: str
    skills: list[str]
    availability: list[dict]
    max_load: int
    latitude: float
    longitude: float
    place_code: str | None
    service_radius_m: float | None
    status: str
    account_id: str | None
    created_at: datetime
    version: int


class NeedCreate(_In):
    category: TermCode
    person_id: str | None = Field(default=None, max_length=36)
    household_id: str | None = Field(default=None, max_length=36)
    priority: Priority = "normal"
    requester_age: int | None = Field(default=None, ge=0, le=150)
    requester_tags: list[TermCode] = Field(default_factory=list, max_length=20, description="特殊群体标签")
    place_code: PlaceCode | None = None
    latitude: Latitude
    longitude: Longitude
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None
    source: Source = "staff"
    source_ref: str | None = Field(default=None, max_length=64, description="来源编号，如诉求工单号")
    description: str | None = Field(default=None, max_length=2000)


class NeedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    category: str
    person_id: str | None
    household_id: str | None
    priority: str
    priority_score: int
    requester_age: int | None
    requester_tags: list[str]
    place_code: str | None
    latitude: float
    longitude: float
    window_start: datetime | None
    window_end: datetime | None
    source: str
    source_ref: str | None
    description: str | None
    status: str
    matched_kind: str | None
    matched_id: str | None
    matched_at: datetime | None
    match_seconds: float | None
    created_at: datetime
    version: int


class HoursOfferCreate(_In):
    minutes: int = Field(gt=0, le=31 * 24 * 60, description="本期愿意提供的服务时长（分钟）", examples=[480])
    period_start: date = Field(description="承诺时段的第一天（北京时间）")
    period_end: date | None = Field(default=None, description="承诺时段的最后一天，默认与第一天相同；不超过 31 天")
    note: str | None = Field(default=None, max_length=300, examples=["十二月每周六上午助餐"])


class HoursOfferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    volunteer_id: str
    minutes: int
    period_start: date
    period_end: date
    note: str | None
    created_by: str
    created_at: datetime
