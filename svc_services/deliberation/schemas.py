"""API models of resident deliberation (inputs refuse unknown fields)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from common.validators import GridOrBuildingCode, ReachCode
from svc_services.deliberation.rules import QuorumRule, Rule

ScopeCode = Field(description="范围的区划代码：社区 12 位、网格 15 位、楼栋 18 位")
CATEGORIES = ("environment", "facilities", "property", "maintenance_fund", "safety", "elderly", "parking",
              "culture", "other")


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ElectorIn(In):
    """Only where the person lives and in which household: no name, ID number or phone."""

    building_code: GridOrBuildingCode = Field(description="楼栋代码（18 位）；未登记楼栋的户为网格代码（15 位）")
    household_id: str = Field(min_length=1, max_length=36)
    household_head: bool = False
    birth_date: date | None = None
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)


class ElectorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person_id: str
    building_code: str
    household_id: str
    household_head: bool
    birth_date: date | None
    version: int | None
    removed: bool


class PolicyIn(In):
    cosign_threshold: int = Field(ge=1, le=10_000, description="提议成为议题所需的联署人数（不含提议人）")


class PolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    community_code: str
    cosign_threshold: int


class TopicCreate(In):
    title: str = Field(min_length=2, max_length=200)
    description: str = Field(min_length=1, max_length=5000)
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    scope_kind: Literal["building", "grid", "community"]
    scope_code: ReachCode = ScopeCode
    source: Literal["proposal", "request", "staff"] = Field(
        "proposal", description="居民提议（需联署）、诉求升级为大事（request_id）、或工作人员发起")
    request_id: str | None = Field(default=None, max_length=36, description="升级为大事的诉求")


class TransitionIn(In):
    action: str = Field(max_length=16)
    version: int = Field(ge=1)
    note: str | None = Field(default=None, max_length=2000)


class EntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    action: str
    from_stage: str | None
    to_stage: str
    actor: str
    note: str | None
    at: datetime


class TopicOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    description: str
    category: str
    scope_kind: str
    scope_code: str
    community_code: str
    source: str
    stage: str
    request_id: str | None
    cosign_threshold: int
    cosigns: int
    created_at: datetime
    updated_at: datetime
    version: int


class TopicDetail(TopicOut):
    timeline: list[EntryOut] = []
    allowed_actions: list[str] = []


class CommentIn(In):
    text: str = Field(min_length=1, max_length=2000)


class HideIn(In):
    reason: str = Field(min_length=2, max_length=500, description="隐藏理由（评论不删除，只隐藏）")


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    topic_id: str
    author_role: str
    text: str | None
    hidden: bool
    hidden_reason: str | None
    at: datetime


class MemberIn(In):
    kind: Literal["resident_rep", "grid_worker", "property", "department"] = Field(
        description="居民代表、网格员、物业公司、职能部门（吹哨报到）")
    ref: str = Field(min_length=1, max_length=64, description="人员编号、用户名、单位或部门代码")
    name: str | None = Field(default=None, max_length=100)


class MeetingIn(In):
    starts_at: datetime
    place: str | None = Field(default=None, max_length=200)
    online_url: str | None = Field(default=None, max_length=500, pattern=r"^https://")
    members: list[MemberIn] = Field(min_length=1, max_length=200)


class RecordIn(In):
    attended: list[str] = Field(max_length=200, description="到会成员的 ref")
    minutes: str = Field(min_length=1, max_length=20000, description="会议纪要")


class MeetingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    topic_id: str
    starts_at: datetime
    place: str | None
    online_url: str | None
    members: list[dict]
    minutes: str | None
    recorded_at: datetime | None


class VoteIn(In):
    options: list[str] = Field(min_length=2, max_length=20)
    eligibility: Literal["household_head", "household", "adult"] = Field(
        description="户主投票、每户一票、或每名成年居民一票")
    opens_at: datetime
    closes_at: datetime
    secret: bool = True
    rule: Rule = Field("simple", description=(
        "通过规则（按实投票数，首个选项为议案）：simple 过半数、two_thirds 三分之二以上、three_quarters 四分之三以上；"
        "物业事项至少过半数，维修资金事项须四分之三以上（《民法典》第二百七十八条，按人数计，不计面积）"))
    quorum_rule: QuorumRule = Field("percent", description=(
        "参与率：percent 按 quorum_percent，two_thirds 为应投人数的三分之二以上（精确；物业、维修资金事项须至少如此）"))
    quorum_percent: int | None = Field(None, ge=1, le=100, description=(
        "有效投票须达到的应投比例（%），quorum_rule 为 percent 时适用，缺省 50"))
    changeable: bool = Field(False, description="截止前可改票")


class BallotIn(In):
    option: str = Field(min_length=1, max_length=100)


class BallotOut(BaseModel):
    vote_id: str
    option: str
    revision: int
    receipt: str = Field(description="本票的哈希（计票时并入结果哈希，可据此核对本票已计入）")


class NamedBallotOut(BaseModel):
    """A named ballot: the person (a proxy's person), what they chose, the last revision and when, and whether it
    was counted (false: the voter was no longer eligible at close, e.g. moved out of the scope)."""

    person_id: str
    option: str
    revision: int
    cast_at: datetime
    counted: bool


class VoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    topic_id: str
    options: list[str]
    eligibility: str
    opens_at: datetime
    closes_at: datetime
    secret: bool
    rule: str
    quorum_rule: str
    quorum_percent: int | None
    changeable: bool
    status: str
    result: dict | None
    tally_hash: str | None
    closed_at: datetime | None


class TaskIn(In):
    title: str = Field(min_length=1, max_length=200)
    owner_kind: Literal["community", "department", "provider"]
    owner_ref: str = Field(min_length=1, max_length=64)
    due_at: datetime


class ResolutionIn(In):
    text: str = Field(min_length=1, max_length=5000)
    tasks: list[TaskIn] = Field(min_length=1, max_length=50)


class ReportIn(In):
    text: str = Field(min_length=1, max_length=2000)
    percent: int = Field(ge=0, le=100, description="完成进度；100 即办结")


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    owner_kind: str
    owner_ref: str
    due_at: datetime
    done_at: datetime | None


class ResolutionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    topic_id: str
    text: str
    owners: list[dict]
    status: str
    created_at: datetime
    executed_at: datetime | None
    tasks: list[TaskOut] = []
