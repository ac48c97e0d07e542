from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.validators import DivisionCodeStr
from common.validators import VersionNumber
from svc_services.codes import AttributeType, Category, Channel, MaterialSource, Tier

CODE_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,31}$"


class AttributeValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)


class Attribute(BaseModel):
    """An Open311 service-definition attribute."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", examples=["meal_time"])
    datatype: AttributeType
    description: str = Field(min_length=1, max_length=200, examples=["送餐时段"])
    required: bool = False
    variable: bool = True
    order: int = Field(default=0, ge=0)
    datatype_description: str | None = Field(default=None, max_length=200)
    values: list[AttributeValue] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _values_for_lists(self) -> "Attribute":
        is_list = self.datatype in ("singlevaluelist", "multivaluelist")
        if is_list and not self.values:
            raise ValueError("列表类型的属性须给出可选值 values")
        if not is_list and self.values:
            raise ValueError("只有列表类型的属性可以给出可选值 values")
        keys = [v.key for v in self.values]
        if len(keys) != len(set(keys)):
            raise ValueError("可选值 key 不能重复")
        return self


class Material(BaseModel):
    """A required material (材料): uploaded by the resident, or fetched from a department through the exchange."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", examples=["dibao_certificate"])
    name: str = Field(min_length=1, max_length=100, examples=["低保证明"])
    source: MaterialSource = "upload"
    department: str | None = Field(default=None, max_length=32, description="可通过交换平台提供该材料的部门")
    required: bool = True

    @model_validator(mode="after")
    def _exchange_needs_department(self) -> "Material":
        if self.source == "exchange" and not self.department:
            raise ValueError("通过交换平台获取的材料须注明提供部门 department")
        return self


class ItemContent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["老年助餐"])
    description: str | None = Field(default=None, max_length=2000)
    category: Category
    tier: Tier
    department: str = Field(min_length=1, max_length=32, examples=["minzheng"])
    response_hours: float = Field(ge=0, le=24 * 90, description="响应时限（小时）")
    resolution_hours: float = Field(gt=0, le=24 * 365, description="办结时限（小时）")
    working_hours: bool = Field(default=False, description="按工作时间计时（否则按自然小时）")
    emergency: bool = False
    kiosk_instant: bool = Field(default=False, description="一体机秒办")
    personal: bool = Field(default=True, description="涉及居民个人事务（照护、上门、证件、求助等）：公开的 Open311 接口"
                                                     "不公布其诉求的描述和地址；公共事务（路灯、环境等）填 false")
    appointment_required: bool = Field(default=False, description="服务预约：须预约办理时段（窗口号、上门时间），"
                                                                  "时段由 svc_matching 中 catalogue_item_code 为本事项的可预约资源提供")
    channels: list[Channel] = Field(default_factory=lambda: ["app", "kiosk", "counter", "phone", "grid_patrol",
                                                             "iot", "api"], min_length=1)
    materials: list[Material] = Field(default_factory=list, max_length=30)
    attributes: list[Attribute] = Field(default_factory=list, max_length=50)
    keywords: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _unique_codes(self) -> "ItemContent":
        for name, seq in (("attributes", self.attributes), ("materials", self.materials)):
            codes = [a.code for a in seq]
            if len(codes) != len(set(codes)):
                raise ValueError(f"{name} 中的 code 不能重复")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels 不能重复")
        return self


class ItemCreate(ItemContent):
    code: str = Field(pattern=CODE_PATTERN, examples=["YL-ZC-001"])
    scope: DivisionCodeStr | None = Field(
        default=None, examples=["110105001001"],
        description="事项所属辖区（街道、社区区划代码），不填为全区事项清单；与主管部门一起决定谁可以修改该事项")


class ItemUpdate(ItemContent):
    """A full new version of the item's content; `version` is the current version the editor saw."""

    version: VersionNumber


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    version: int
    current_version: int
    active: bool
    scope: str | None = None
    name: str
    description: str | None
    category: str
    category_name: str
    tier: str
    department: str
    response_hours: float
    resolution_hours: float
    working_hours: bool
    emergency: bool
    kiosk_instant: bool
    personal: bool = True
    appointment_required: bool = False
    channels: list[str]
    materials: list[Material]
    attributes: list[Attribute]
    keywords: list[str]
    created_at: datetime
    created_by: str
