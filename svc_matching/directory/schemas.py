from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from common.validators import CommunityCode, USCC
from svc_matching.geo import HHMM, ByDay, Latitude, Longitude, PlaceCode, TermCode


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaxonomyTermCreate(_In):
    taxonomy: Literal["category", "eligibility"]
    code: TermCode
    name: str = Field(min_length=1, max_length=100, examples=["助浴服务"])
    name_en: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    parent_id: str | None = None


class OrganizationCreate(_In):
    name: str = Field(min_length=1, max_length=200, examples=["幸福家园养老服务中心"])
    alternate_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    email: str | None = Field(default=None, max_length=200)
    website: str | None = Field(default=None, max_length=300)
    phone: str | None = Field(default=None, pattern=r"^[0-9+\-]{5,20}$")
    uscc: USCC = Field(description="统一社会信用代码 (GB 32100，含校验)", examples=["52110105MA01AB125N"])
    legal_status: str | None = Field(default=None, max_length=64, examples=["社会服务机构"])
    community: CommunityCode | None = None


class LocationCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    location_type: Literal["physical", "postal", "virtual"] = "physical"
    address: str | None = Field(default=None, max_length=300)
    place_code: PlaceCode | None = None
    latitude: Latitude
    longitude: Longitude


class ScheduleIn(_In):
    byday: ByDay
    opens_at: HHMM
    closes_at: HHMM
    description: str | None = Field(default=None, max_length=300)


class CapacityIn(_In):
    maximum: int = Field(ge=0, le=1_000_000, description="每周期可服务人次，不得为负")
    unit: str = Field(default="人次/周", max_length=32)
    description: str | None = Field(default=None, max_length=300)


class ServiceCreate(_In):
    organization_id: str
    name: str = Field(min_length=1, max_length=200, examples=["老年助餐"])
    alternate_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    status: Literal["active", "inactive", "defunct", "temporarily closed"] = "active"
    fees: Literal["free", "low_fee", "paid"] = "free"
    fees_description: str | None = Field(default=None, max_length=500)
    categories: list[TermCode] = Field(min_length=1, max_length=20, description="服务类别 (taxonomy: category)")
    eligibility: list[TermCode] = Field(default_factory=list, max_length=20,
                                        description="服务对象群体，任一即可 (taxonomy: eligibility)")
    eligibility_description: str | None = Field(default=None, max_length=1000)
    minimum_age: int | None = Field(default=None, ge=0, le=150)
    maximum_age: int | None = Field(default=None, ge=0, le=150)
    service_area_radius_m: float | None = Field(default=None, gt=0, le=100_000)
    service_area_codes: list[PlaceCode] = Field(default_factory=list, max_length=50)
    department: str | None = Field(default=None, max_length=32)
    location_ids: list[str] = Field(default_factory=list, max_length=20)
    schedules: list[ScheduleIn] = Field(default_factory=list, max_length=50)
    capacity: CapacityIn


class ServiceStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "inactive", "defunct", "temporarily closed"] = Field(
        description="active 重新上架；inactive / defunct / temporarily closed 从资源清单撤下")
    reason: str | None = Field(default=None, max_length=300, examples=["机构停止运营"])
    version: int | None = Field(default=None, ge=1, description="期望的当前版本")
