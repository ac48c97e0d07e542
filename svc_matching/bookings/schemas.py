from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from common.validators import AreaCode, CommunityOrGridCode

from svc_matching.bookings.calendar import DAY_KINDS, parse_window

Kind = Literal["activity_room", "meeting_room", "canteen_seat", "counter", "home_visit"]
Booker = Literal["resident", "organisation", "staff"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceCreate(_In):
    name: str = Field(min_length=1, max_length=200, examples=["幸福社区活动室"])
    kind: Kind
    place_code: CommunityOrGridCode = Field(description="所属社区（12 位）或网格（15 位）")
    location_id: str | None = Field(default=None, max_length=36)
    opening_hours: dict[str, list[str]] = Field(
        description="开放时段（北京时间），按工作日 workday / 周末 weekend / 法定节假日 holiday（调休按工作日历）",
        examples=[{"workday": ["09:00-12:00", "14:00-18:00"], "weekend": ["09:00-12:00"]}])
    closed_dates: list[date] = Field(default_factory=list, max_length=366)
    slot_minutes: int = Field(ge=10, le=480)
    capacity: int = Field(ge=1, le=10000, description="每时段可约名额")
    bookers: list[Booker] = Field(min_length=1, max_length=3)
    booker_scope: AreaCode | None = Field(default=None,
                                     description="可预约居民的居住范围（默认所属社区）")
    advance_days: int = Field(default=14, ge=0, le=180)
    weekly_limit: int = Field(default=2, ge=1, le=100, description="每人每周（周一至周日）预约上限")
    approval_required: bool = False
    no_show_limit: int = Field(default=3, ge=1, le=100)
    no_show_window_days: int = Field(default=90, ge=1, le=730)
    no_show_block_days: int = Field(default=30, ge=1, le=365)
    catalogue_item_code: str | None = Field(default=None, pattern=r"^[A-Z0-9-]{2,32}$",
                                            description="服务预约：该事项的办理时段")

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for kind, windows in v.items():
            if kind not in DAY_KINDS:
                raise ValueError(f"unknown day kind {kind!r} (workday, weekend, holiday)")
            if len(windows) > 8:
                raise ValueError("at most 8 windows a day")
            spans = sorted(parse_window(w) for w in windows)
            if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
                raise ValueError("windows overlap")
        return v

    @model_validator(mode="after")
    def _some_hours(self):
        if not any(self.opening_hours.values()):
            raise ValueError("opening_hours: no window at all")
        return self


class BookableResourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    kind: str
    place_code: str
    location_id: str | None
    opening_hours: dict[str, list[str]]
    closed_dates: list[str]
    slot_minutes: int
    capacity: int
    bookers: list[str]
    booker_scope: str
    advance_days: int
    weekly_limit: int
    approval_required: bool
    no_show_limit: int
    no_show_window_days: int
    no_show_block_days: int
    catalogue_item_code: str | None
    status: str
    version: int


class SlotOut(BaseModel):
    starts_at: datetime
    ends_at: datetime
    capacity: int
    free: int


class BookingCreate(_In):
    resource_id: str = Field(min_length=1, max_length=36)
    starts_at: AwareDatetime = Field(description="时段开始（带时区）")
    person_id: str | None = Field(default=None, max_length=36, description="工作人员代居民预约时填写")
    request_id: str | None = Field(default=None, max_length=64, description="服务预约：诉求编号（svc_services）")
    purpose: str | None = Field(default=None, max_length=300, examples=["老年合唱队排练"])
    waitlist: bool = Field(default=False, description="时段已满时排队候补")


class TransitionBody(_In):
    action: Literal["approve", "reject", "check_in", "complete", "cancel", "no_show", "reschedule"]
    version: int = Field(ge=1)
    note: str | None = Field(default=None, max_length=300)
    starts_at: AwareDatetime | None = Field(default=None, description="改约：新的时段开始")


class BookingEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    action: str
    from_state: str | None
    to_state: str
    actor: str
    role: str
    note: str | None
    starts_at: datetime
    at: datetime


class BookingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    resource_id: str
    place_code: str
    starts_at: datetime
    ends_at: datetime
    booker_kind: str
    person_id: str | None
    organization_id: str | None
    request_id: str | None
    purpose: str | None
    state: str
    version: int
    created_at: datetime
    allowed_actions: list[str] = []


class BookingDetail(BookingOut):
    timeline: list[BookingEntryOut]
