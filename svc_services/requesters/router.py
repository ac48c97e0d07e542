"""The requester-profile feed: svc_residents (or ops) keeps svc_services' minimal replica current.

svc_residents' feed relay (ADR 0007) sends each snapshot with a per-person `version`: a PUT or DELETE whose version is
not newer than the stored one changes nothing (idempotent retries, no going back in time when deliveries overtake
each other); a DELETE with a version leaves a tombstone holding only that version. Ops may write without a version."""
from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from common.auth import Principal, require_roles
from common.deps import AppClock, AppDb, AppSettings, DbSession
from common.errors import Problem
from common.lookup import get_or_404
from svc_services.requesters.models import RequesterProfile
from svc_services.requesters.service import profile_cache, remove_profile, upsert_profile

router = APIRouter(prefix="/services/v1/requester_profiles", tags=["requester profiles 诉求人画像（最小副本）"])
PersonId = Path(min_length=1, max_length=36)


def feed_source(settings: AppSettings, principal: Principal = Depends(require_roles("system", "ops"))) -> Principal:
    """Ops, or a system member named as a profile source (svc_residents): birth dates and special-group tags
    (低保, 残疾 …) are sensitive personal information, not for every system on the exchange (a kiosk, a
    department) to read or write."""
    if principal.role == "system" and principal.member not in settings.requester_profile_sources:
        raise Problem(403, "requester_profile.not_a_source",
                      ("只有居民信息库（svc_residents）可读写诉求人画像",
                       "Only the residents registry (svc_residents) reads and writes requester profiles"))
    return principal


FEED = Depends(feed_source)


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="特殊群体标签代码", examples=["elderly"])
    valid_until: date | None = Field(default=None, description="有效期至（含当日）；为空表示长期有效")


class ProfileIn(BaseModel):
    """Only what the indicators need: no name, ID number, phone or address (refused as unknown fields)."""

    model_config = ConfigDict(extra="forbid")

    birth_date: date | None = Field(default=None, description="出生日期（由身份证号推导），用于计算提交时年龄")
    groups: list[GroupIn] = Field(default_factory=list, max_length=30, description="特殊群体标签")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="来源版本号（svc_residents 按人递增）；不大于已存版本的更新被忽略（幂等、防乱序）。"
                                            "运维手工更新可不填")


class ProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person_id: str
    birth_date: date | None
    groups: list[dict]
    updated_at: datetime
    version: int | None = None
    removed: bool = False


@router.put("/{person_id}", response_model=ProfileOut, summary="更新诉求人画像 Replace a requester profile")
async def put_profile(session: DbSession, db: AppDb, clock: AppClock, body: ProfileIn, person_id: str = PersonId,
                      principal: Principal = FEED):
    groups = [g.model_dump(mode="json") for g in {g.code: g for g in body.groups}.values()]
    async with session.begin():
        # a stale version (older than the stored one) changes nothing and answers with what is stored
        out = ProfileOut.model_validate(await upsert_profile(session, person_id, body.birth_date, groups, clock.now(),
                                                             version=body.version))
    profile_cache(db).forget(person_id)
    return out


@router.get("/{person_id}", response_model=ProfileOut, summary="诉求人画像 Get a requester profile")
async def get_profile(session: DbSession, person_id: str = PersonId, principal: Principal = FEED):
    profile = await get_or_404(session, RequesterProfile, person_id,
                               Problem(404, "requester_profile.not_found", ("诉求人画像不存在", "No profile for this person")),
                               visible=lambda p: not p.removed)
    return ProfileOut.model_validate(profile)


@router.delete("/{person_id}", status_code=204, summary="删除诉求人画像 Drop a requester profile")
async def delete_profile(session: DbSession, db: AppDb, clock: AppClock, person_id: str = PersonId,
                         principal: Principal = FEED,
                         version: int | None = Query(None, ge=1, le=2**31 - 1,
                                                     description="来源版本号：给出时保留无数据的删除标记，较旧的更新不会恢复画像")):
    async with session.begin():
        await remove_profile(session, person_id, clock.now(), version=version)
    profile_cache(db).forget(person_id)
    return Response(status_code=204)
