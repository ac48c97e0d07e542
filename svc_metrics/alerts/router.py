from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from common.auth import Principal, require_roles
from common.clock import Clock, get_clock
from common.deps import AppDb, AppSettings
from svc_metrics.alerts import cases, service
from svc_metrics.alerts.models import Warning_
from svc_metrics.kpis import periods
from svc_metrics.kpis.service import READ_ROLES

router = APIRouter(prefix="/metrics/v1/warnings", tags=["warnings 风险预警"])


class WarningOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    scope: str
    category: str | None
    period: str
    title_zh: str
    title_en: str
    evidence: dict[str, Any]
    rectification: bool
    status: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500, description="处置说明 What is being done")


@router.post("/scan", summary="运行预警检测 Run the early-warning detectors")
async def scan(settings: AppSettings, db: AppDb, period: str | None = None,
               principal: Principal = Depends(require_roles("ops", "system")), clock: Clock = Depends(get_clock)) -> dict[str, Any]:
    now = clock.now()
    p = periods.parse(period, now, default_kind="quarter")
    async with db.session() as session, session.begin():
        created = await service.scan(session, now, settings, p)
        items = [WarningOut.model_validate(w).model_dump(mode="json") for w in created]
    return {"created": len(items), "items": items}


@router.get("", summary="预警列表 Warnings")
async def list_warnings(db: AppDb, status: Literal["open", "acknowledged"] | None = None,
                        kind: str | None = None, principal: Principal = Depends(require_roles(*READ_ROLES))
                        ) -> dict[str, Any]:
    stmt = select(Warning_).order_by(Warning_.created_at.desc(), Warning_.id)
    if status:
        stmt = stmt.where(Warning_.status == status)
    if kind:
        stmt = stmt.where(Warning_.kind == kind)
    async with db.session() as session:
        rows = [w for w in (await session.execute(stmt.limit(1000))).scalars() if service.visible(principal, w)]
    return {"items": [WarningOut.model_validate(w).model_dump(mode="json") for w in rows[:200]]}


@router.post("/{warning_id}/acknowledge", response_model=WarningOut, summary="确认预警 Acknowledge a warning")
async def acknowledge(warning_id: str, body: AckIn, db: AppDb,
                      principal: Principal = Depends(require_roles("ops", "community_staff", "street_staff")),
                      clock: Clock = Depends(get_clock)) -> Any:
    async with db.session() as session, session.begin():
        w = await service.acknowledge(session, principal, warning_id, body.note, clock.now())
    return w


cases_router = APIRouter(prefix="/metrics/v1/rectifications", tags=["rectifications 整改"])


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["in_progress", "closed"] = Field(description="下一步：in_progress 开始整改，closed 销号（须写说明）")
    note: str | None = Field(default=None, max_length=2000, description="说明 What was done")


@cases_router.get("", summary="整改事项列表 Rectification cases")
async def list_cases(db: AppDb, status: Literal["opened", "in_progress", "closed"] | None = None,
                     scope: str | None = None,
                     principal: Principal = Depends(require_roles(*READ_ROLES))) -> dict[str, Any]:
    async with db.session() as session:
        rows = await cases.list_visible(session, principal, status, scope)
    return {"items": [cases.out(c) for c in rows]}


@cases_router.get("/{case_id}", summary="整改事项 One rectification case")
async def get_case(case_id: str, db: AppDb,
                   principal: Principal = Depends(require_roles(*READ_ROLES))) -> dict[str, Any]:
    async with db.session() as session:
        return cases.out(await cases.get_visible(session, principal, case_id))


@cases_router.post("/{case_id}/advance", summary="推进整改 Move a case to its next step")
async def advance_case(case_id: str, body: AdvanceIn, db: AppDb,
                       principal: Principal = Depends(require_roles(*READ_ROLES)), clock: Clock = Depends(get_clock)) -> dict[str, Any]:
    async with db.session() as session, session.begin():
        case = await cases.advance(session, principal, case_id, body.status, body.note, clock.now())
        return cases.out(case)
