from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from common.auth import Principal, require_roles
from common.clock import Clock, get_clock
from common.deps import AppDb, AppSettings
from svc_metrics.kpis import export, measure, periods, service, targets
from svc_metrics.kpis.queries import ALL, Filters
from svc_metrics.kpis.schemas import ExchangeCallsOut, TargetOverrideIn, TargetOverrideOut

router = APIRouter(prefix="/metrics/v1", tags=["kpis 指标"])
READ = require_roles(*service.READ_ROLES)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _filters(principal: Principal, scope: str, category: str | None, channel: str | None,
             group: str | None) -> Filters:
    return Filters(scope=service.check_scope(principal, scope), category=category, channel=channel, group=group)


def _export(items: list[dict[str, Any]], fmt: str, name: str, meta: list[str]) -> Response:
    if fmt == "csv":
        return Response(export.to_csv(items, meta), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return Response(export.to_xlsx(items, meta), media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})


@router.get("/catalogue", summary="指标目录 The KPI catalogue")
async def catalogue(db: AppDb, principal: Principal = Depends(READ)) -> dict[str, Any]:
    async with db.session() as session:
        return {"items": [targets.describe(d) for d in await service.definitions(session)]}


# What the KPI reads answer, for the aggregated OpenAPI (their bodies are built per request, with no model)
_RESPONSE_TIME = {"code": "response_time", "name_zh": "平均响应时间", "name_en": "Average first-response time",
                  "unit": "h", "direction": "lower", "value": 6.4, "numerator": None, "denominator": None,
                  "count": 212, "mean": 6.4, "median": 3.1, "p90": 14.2,
                  "target": {"value": 12, "source": "001", "note": "规划目标", "override_scope": None},
                  "baseline": {"value": 48, "source": "000"}, "status": "met", "status_zh": "达标",
                  "status_en": "Met"}
_EXPORTS = {"text/csv": {"schema": {"type": "string"}}, XLSX: {"schema": {"type": "string", "format": "binary"}}}
_KPIS_RESPONSES = {200: {"description": "指标表（format=csv / xlsx 时为文件） The indicators (a file for csv / xlsx)",
                         "content": {"application/json": {"example": {
                             "scope": "110105001", "period": "2026-11", "period_kind": "month",
                             "from": "2026-11-01T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00",
                             "category": None, "channel": None, "group": None, "items": [_RESPONSE_TIME]}},
                             **_EXPORTS}}}
_KPI_RESPONSES = {200: {"description": "指标及趋势（format=csv / xlsx 时为文件） The indicator and its trend",
                        "content": {"application/json": {"example": {
                            **_RESPONSE_TIME, "scope": "110105001", "period": "2026-11",
                            "definition": {"code": "response_time", "name_zh": "平均响应时间",
                                           "name_en": "Average first-response time", "unit": "h",
                                           "direction": "lower", "definition_zh": "首次响应时间 − 提交时间",
                                           "definition_en": "First response − submission", "stat": "mean",
                                           "baseline": {"value": 48, "source": "000"},
                                           "targets": [{"value": 12, "source": "001", "note": "规划目标"}],
                                           "sources": ["000", "001"]},
                            "trend": [{"period": "2026-10", "value": 7.9, "status": "met"},
                                      {"period": "2026-11", "value": 6.4, "status": "met"}]}},
                            **_EXPORTS}}}


@router.get("/kpis", summary="指标表 Every indicator for a scope and period (JSON, CSV or XLSX)",
            responses=_KPIS_RESPONSES)
async def kpis(db: AppDb, settings: AppSettings, scope: str = "all", period: str | None = None, category: str | None = None,
               channel: str | None = None, group: str | None = None,
               format: Literal["json", "csv", "xlsx"] = "json",
               principal: Principal = Depends(READ), clock: Clock = Depends(get_clock)) -> Any:
    f = _filters(principal, scope, category, channel, group)
    now = clock.now()
    p = periods.parse(period, now)
    async with db.session() as session:
        items = await service.evaluate_all(session, p, f, now, min_group=settings.survey_min_group)
    body = {"scope": f.scope, "period": p.label, "period_kind": p.kind, "from": p.start.isoformat(),
            "to": p.end.isoformat(), "category": category, "channel": channel, "group": group, "items": items}
    if format != "json":
        return _export(items, format, f"kpis_{f.scope}_{p.label}", [f"范围 scope={f.scope}", f"周期 period={p.label}"])
    return body


@router.get("/kpis/{code}", summary="单个指标及趋势 One indicator with its trend", responses=_KPI_RESPONSES)
async def kpi(code: str, db: AppDb, settings: AppSettings, scope: str = "all", period: str | None = None,
              category: str | None = None, channel: str | None = None, group: str | None = None,
              trend: int = Query(default=6, ge=1, le=24), format: Literal["json", "csv", "xlsx"] = "json",
              principal: Principal = Depends(READ), clock: Clock = Depends(get_clock)) -> Any:
    f = _filters(principal, scope, category, channel, group)
    now = clock.now()
    p = periods.parse(period, now)
    async with db.session() as session:
        d = await service.definition(session, code)
        ovr = await service.overrides(session)
        series = [{"period": q.label,
                   **(await measure.evaluate(session, d, q, f, now, ovr, min_group=settings.survey_min_group))}
                  for q in p.trailing(trend)]
    current = series[-1]
    if format != "json":
        return _export(series, format, f"kpi_{code}_{f.scope}_{p.label}", [f"指标 {code}", f"范围 scope={f.scope}"])
    return {**current, "scope": f.scope, "period": p.label, "definition": targets.describe(d),
            "trend": [{"period": s["period"], "value": s["value"], "status": s["status"]} for s in series]}


@router.put("/kpis/{code}/targets/{scope}", response_model=TargetOverrideOut,
            summary="设置辖区目标值 Override the target for a scope")
async def put_target(code: str, scope: str, body: TargetOverrideIn, db: AppDb,
                     principal: Principal = Depends(require_roles("ops", "street_staff")),
                     clock: Clock = Depends(get_clock)) -> Any:
    async with db.session() as session, session.begin():
        row = await service.set_override(session, principal, code, scope, body.value, body.source, body.note,
                                         clock.now())
    return row


@router.get("/targets", summary="辖区目标值覆盖 Target overrides")
async def list_targets(db: AppDb, principal: Principal = Depends(READ)) -> dict[str, Any]:
    async with db.session() as session:
        rows = await service.overrides(session)
    return {"items": [TargetOverrideOut.model_validate(r).model_dump(mode="json") for r in rows]}


@router.get("/exchange/calls", response_model=ExchangeCallsOut, response_model_by_alias=True,
            summary="数据交换调用量与拒绝率 Exchange calls per resource and refused calls")
async def exchange_calls(db: AppDb, period: str | None = None,
                         principal: Principal = Depends(READ), clock: Clock = Depends(get_clock)) -> Any:
    """Calls through the gateway's data exchange in the period (default: this month), per catalogue resource, with
    the calls refused (401 / 403 / 429). Platform-wide, so for ops and evaluators engaged for the whole platform."""
    service.check_scope(principal, ALL)
    p = periods.parse(period, clock.now())
    async with db.session() as session:
        return await service.exchange_calls(session, p)
