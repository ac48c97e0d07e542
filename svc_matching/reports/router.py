from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from common.deps import AppSettings, DbSession
from common.auth import Principal, require_roles
from common.errors import Problem
from common.validators import PlaceCode
from svc_matching.reports import service

router = APIRouter(prefix="/matching/v1/reports", tags=["reports 缺口与重复投入"])
ROLES = ("community_staff", "street_staff", "dept_staff", "evaluator", "ops")


def _scope(principal: Principal, place_code: str | None) -> None:
    if principal.role in ("community_staff", "street_staff") and not principal.covers_place(place_code):
        raise Problem(403, "forbidden", ("请指定本辖区的区域编码（place_code）", "Give a place_code within your scope"))


@router.get("/gaps", summary="供需缺口 Unmet needs with no eligible provider, by category and grid")
async def gaps(settings: AppSettings, session: DbSession, request: Request, place_code: PlaceCode | None = Query(None),
               principal: Principal = Depends(require_roles(*ROLES))):
    _scope(principal, place_code)
    return await service.gaps(session, settings, place_code)


@router.get("/duplicates", summary="重复投入 Services duplicating each other in one area")
async def duplicates(settings: AppSettings, session: DbSession, request: Request, place_code: PlaceCode | None = Query(None),
                     principal: Principal = Depends(require_roles(*ROLES))):
    _scope(principal, place_code)
    return await service.duplicates(session, settings, place_code)
