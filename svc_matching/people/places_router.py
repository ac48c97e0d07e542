"""The person-place feed endpoint: svc_residents (or ops) keeps svc_matching's replica of where persons live."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from common.deps import AppSettings, DbSession
from common.auth import Principal, require_roles
from common.clock import Clock, get_clock
from common.errors import Problem, invalid
from common.lookup import get_or_404
from common.validators import CommunityCode, GridOrBelowCode
from svc_matching.people import places
from svc_matching.people.models import PersonPlace

router = APIRouter(prefix="/matching/v1/person_places", tags=["person places 居民所在地（最小副本）"])
PersonId = Path(min_length=1, max_length=36)
Version = Field(default=None, ge=1, le=2**31 - 1,
                description="来源版本号（svc_residents 按人递增）；不大于已存版本的更新被忽略。运维手工更新可不填")


def feed_source(settings: AppSettings, principal: Principal = Depends(require_roles("system", "ops"))) -> Principal:
    """Ops, or a system member named as a source (svc_residents): which persons exist and where they live is
    personal data, not for every member of the exchange to read or write."""
    if principal.role == "system" and principal.member not in settings.person_place_sources:
        raise Problem(403, "person_place.not_a_source", ("只有居民信息库（svc_residents）可读写居民所在地",
                                                         "Only the residents registry writes person places"))
    return principal


FEED = Depends(feed_source)


class PlaceIn(BaseModel):
    """Only the place: no name, ID number, phone, address or household (refused as unknown fields)."""

    model_config = ConfigDict(extra="forbid")

    grid_code: GridOrBelowCode = Field(description="所在网格编码", examples=["110105001001001"])
    community_code: CommunityCode = Field(description="所在社区编码", examples=["110105001001"])
    version: int | None = Version


class PlaceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person_id: str
    grid_code: str | None
    community_code: str | None
    version: int | None
    removed: bool
    updated_at: datetime


@router.put("/{person_id}", response_model=PlaceOut, summary="更新居民所在地 Replace a person's place")
async def put_place(session: DbSession, body: PlaceIn, request: Request, person_id: str = PersonId, principal: Principal = FEED,
                    clock: Clock = Depends(get_clock)):
    if not body.grid_code.startswith(body.community_code):
        raise invalid("grid_code", "place.grid_outside_community", "网格不在该社区内",
                      "The grid does not lie in the community")
    async with session.begin():
        return PlaceOut.model_validate(await places.upsert_place(
            session, person_id, body.grid_code, body.community_code, clock.now(), version=body.version))


@router.get("/{person_id}", response_model=PlaceOut, summary="居民所在地 Get a person's place")
async def get_place(session: DbSession, request: Request, person_id: str = PersonId, principal: Principal = FEED):
    place = await get_or_404(session, PersonPlace, person_id,
                             Problem(404, "person_place.not_found", ("没有该居民的所在地", "No place for this person")),
                             visible=lambda p: not p.removed)
    return PlaceOut.model_validate(place)


@router.delete("/{person_id}", status_code=204, summary="删除居民所在地 Drop a person's place")
async def delete_place(session: DbSession, request: Request, person_id: str = PersonId, principal: Principal = FEED,
                       clock: Clock = Depends(get_clock), version: int | None = Query(None, ge=1, le=2**31 - 1,
                                                   description="来源版本号：给出时保留无数据的删除标记")):
    async with session.begin():
        await places.remove_place(session, person_id, clock.now(), version=version)
    return Response(status_code=204)
