from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from common.validators import Quarter, SurveyScopeCode

from svc_metrics.surveys.questionnaire import Questionnaire

Scope = Field(description="街道（9 位）、社区（12 位）或网格（15 位）编码",
              examples=["110105001001"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleSpec(_In):
    mode: Literal["all", "random", "stratified"] = "all"
    size: int | None = Field(default=None, ge=1, le=1_000_000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="抽样种子：同一种子、同一名单抽到同一批人")


class SurveyCreate(_In):
    title: str = Field(min_length=1, max_length=200)
    kind: Literal["satisfaction", "needs", "general"] = "satisfaction"
    anonymous: bool = True
    scope: SurveyScopeCode = Scope
    period: Quarter | None = Field(default=None, description="测评所属季度，如 2026-Q4")
    questionnaire: Questionnaire
    sample: SampleSpec = Field(default_factory=SampleSpec)


class SurveyUpdate(_In):
    version: int = Field(ge=1)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    questionnaire: Questionnaire | None = None
    sample: SampleSpec | None = None
    period: Quarter | None = None


class TransitionBody(_In):
    action: Literal["publish", "close"]
    version: int = Field(ge=1)


class SurveyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    family_id: str
    revision: int
    title: str
    kind: str
    anonymous: bool
    scope: str
    period: str | None
    questionnaire: dict[str, Any]
    sample: dict[str, Any]
    status: str
    status_zh: str = ""
    version: int
    invited: int
    created_at: datetime
    published_at: datetime | None
    closed_at: datetime | None
    reminded_at: datetime | None = None
    allowed_actions: list[str] = []


class InvitationsOut(BaseModel):
    survey_id: str
    invited: int
    strata: int = Field(description="令牌所带分组的个数（不足最小分组的已合并）")


class RemindersOut(BaseModel):
    survey_id: str
    reminded: int = Field(description="收到提醒的人数")
    reminded_at: datetime | None


class InvitationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    person_id: str
    grid: str | None
    delivered: bool


class TokenRequest(_In):
    invitation_id: str | None = Field(default=None, max_length=36, description="入户：工作人员为该户领取令牌")


class TokenOut(BaseModel):
    token: str
    invitation_id: str
    note: str = "一次性令牌：只发放一次，作答后失效"


class ResponseIn(_In):
    token: str = Field(min_length=16, max_length=64)
    channel: Literal["app", "kiosk", "visit"] = "app"
    answers: dict[str, Any] = Field(max_length=200)


class ResponseOut(BaseModel):
    survey_id: str
    channel: str
    anonymous: bool
    needs: list[str] = Field(default_factory=list, description="实名答卷：转入需求清单的服务类别")
