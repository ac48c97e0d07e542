"""The survey_need. feed endpoint: svc_metrics (or ops) delivers survey needs and anonymous demand."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from common.auth import Principal, require_roles
from common.clock import Clock, get_clock
from common.deps import AppSettings, DbSession
from common.errors import Problem, invalid
from common.vocab import CATEGORY_CODES
from common.validators import StreetOrBelowCode
from svc_matching.survey_needs import service

# Included by people/router.py (the needs list it feeds), so it serves under /matching/v1/survey_needs.
router = APIRouter(prefix="/survey_needs", tags=["survey needs 问卷需求"])


def feed_source(settings: AppSettings, principal: Principal = Depends(require_roles("system", "ops"))) -> Principal:
    """Ops, or a system member named as a source (svc_metrics, which runs the surveys)."""
    if principal.role == "system" and principal.member not in settings.survey_need_sources:
        raise Problem(403, "survey_need.not_a_source", ("只有问卷测评（svc_metrics）可以写入问卷需求",
                                                        "Only the survey service writes survey needs"))
    return principal


class DemandItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    place_code: StreetOrBelowCode
    category: str = Field(max_length=64)
    count: int = Field(ge=0, le=10_000_000)


class SurveyNeedIn(BaseModel):
    """kind named: one response's needs (person, categories); kind demand: an anonymous survey's counts."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["named", "demand"]
    survey_id: str = Field(max_length=36)
    version: int | None = Field(default=None, ge=1)
    person_id: str | None = Field(default=None, max_length=36)
    categories: list[str] = Field(default_factory=list, max_length=30)
    place_code: StreetOrBelowCode | None = None
    title: str | None = Field(default=None, max_length=200)
    scope: StreetOrBelowCode | None = None
    items: list[DemandItem] = Field(default_factory=list, max_length=5000)


class SurveyNeedOut(BaseModel):
    subject: str
    kind: str
    needs: list[str] = []
    demand_rows: int = 0


@router.put("/{subject}", response_model=SurveyNeedOut, summary="写入问卷需求 Survey needs from svc_metrics' feed")
async def put_survey_needs(session: DbSession, body: SurveyNeedIn, subject: str = Path(min_length=1, max_length=64),
                           principal: Principal = Depends(feed_source), clock: Clock = Depends(get_clock)):
    for i, cat in enumerate([*body.categories, *(d.category for d in body.items)]):
        if cat not in CATEGORY_CODES:
            raise invalid("categories" if i < len(body.categories) else "items", "survey_need.unknown_category",
                          f"未知服务类别：{cat}", f"Unknown category {cat}")
    async with session.begin():
        if body.kind == "named":
            if not body.person_id or not body.place_code:
                raise invalid("person_id" if not body.person_id else "place_code", "survey_need.incomplete",
                              "实名需求须有居民与所在地", "A named need has a person and a place")
            needs = await service.record_needs(session, subject, body.person_id, body.categories, body.place_code,
                                               clock.now())
            return SurveyNeedOut(subject=subject, kind="named", needs=[n.id for n in needs])
        rows = await service.replace_demand(session, body.survey_id, body.title or "", [d.model_dump() for d in body.items],
                                            clock.now())
    return SurveyNeedOut(subject=subject, kind="demand", demand_rows=rows)
