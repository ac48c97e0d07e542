"""KPI catalogue (packaged JSON → table), target overrides, and scope-checked evaluation."""
from __future__ import annotations

import json
import weakref
from datetime import datetime
from importlib import resources
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem, invalid
from svc_metrics.kpis import measure
from svc_metrics.kpis.queries import ALL, Filters
from svc_metrics.kpis.models import KpiDefinition, Observation, TargetOverride
from svc_metrics.kpis.periods import Period

READ_ROLES = ("evaluator", "community_staff", "street_staff", "grid_worker", "dept_staff", "ops")
SCOPE_LENGTHS = {6: "district", 9: "street", 12: "community", 15: "grid"}


def catalogue_file() -> list[dict[str, Any]]:
    text = resources.files("svc_metrics.kpis").joinpath("catalogue.json").read_text(encoding="utf-8")
    return json.loads(text)["indicators"]


async def load_catalogue(session: AsyncSession) -> int:
    """Upsert the packaged catalogue into kpi_definitions (idempotent; overrides live in their own table)."""
    existing = {d.code: d for d in (await session.execute(select(KpiDefinition))).scalars()}
    for pos, item in enumerate(catalogue_file()):
        row = existing.get(item["code"]) or KpiDefinition(code=item["code"])
        row.position = pos
        for k in ("name_zh", "name_en", "definition_zh", "definition_en", "unit", "direction", "calc"):
            setattr(row, k, item[k])
        row.stat = item.get("stat") or "mean"
        row.baseline = item.get("baseline")
        row.targets = item.get("targets") or []
        row.warn_ratio = item.get("warn_ratio", 0.1)
        row.params = item.get("params") or {}
        row.sources = item.get("sources") or []
        if item["code"] not in existing:
            session.add(row)
    await session.flush()
    _CATALOGUE.pop(session.bind, None)
    return len(existing)


# The catalogue changes only when it is loaded (start, seed): keep it per engine instead of reading 23 rows with
# their JSON columns on every query. Rows are detached, read-only copies.
_CATALOGUE: "weakref.WeakKeyDictionary[Any, list[KpiDefinition]]" = weakref.WeakKeyDictionary()


async def definitions(session: AsyncSession) -> list[KpiDefinition]:
    engine_ = session.bind
    cached = _CATALOGUE.get(engine_)
    if cached is None:
        cached = list((await session.execute(select(KpiDefinition).order_by(KpiDefinition.position))).scalars())
        for d in cached:
            session.expunge(d)
        _CATALOGUE[engine_] = cached
    return cached


async def definition(session: AsyncSession, code: str) -> KpiDefinition:
    d = next((x for x in await definitions(session) if x.code == code), None)
    if d is None:
        raise Problem(404, "kpi.not_found", (f"指标 {code} 不存在", f"No indicator {code}"))
    return d


def check_scope(principal: Principal, scope: str) -> str:
    """Validate the scope code and that the caller may see it (staff only their own places)."""
    scope = (scope or ALL).strip()
    if scope != ALL and (not scope.isdigit() or len(scope) not in SCOPE_LENGTHS):
        raise invalid("scope", "scope.invalid", "范围应为 all 或 6/9/12/15 位区划编码（区/街道/社区/网格）",
                      "Scope must be all or a 6/9/12/15-digit place code", where="query")
    if principal.role == "ops":
        return scope
    places = [v for k in SCOPE_LENGTHS.values() for v in principal.scope_values(k)]
    if principal.role == "evaluator" and not places:
        return scope  # a third-party evaluator engaged for the whole platform
    if scope == ALL or not principal.covers_place(scope):
        raise Problem(403, "scope.forbidden", ("无权查看该范围的指标", "You may not see indicators for this scope"))
    return scope


async def overrides(session: AsyncSession) -> list[TargetOverride]:
    return list((await session.execute(select(TargetOverride))).scalars())


async def evaluate_all(session: AsyncSession, period: Period, f: Filters, now: datetime,
                       codes: list[str] | None = None, *, min_group: int) -> list[dict[str, Any]]:
    ovr = await overrides(session)
    defs = [d for d in await definitions(session) if codes is None or d.code in codes]
    return await measure.evaluate_many(session, defs, period, f, now, ovr, min_group=min_group)


# What a target can sensibly be, by the indicator's unit: rates are percentages, durations and counts are not
# negative (and no target is more than a year away), satisfaction scores are ratings of 1–5.
TARGET_RANGES: dict[str, tuple[float, float]] = {
    "%": (0.0, 100.0), "h": (0.0, 365 * 24.0), "min": (0.0, 365 * 24 * 60.0), "个": (0.0, 1_000_000.0),
    "分": (1.0, 5.0),
}


def check_target(d: KpiDefinition, value: float) -> None:
    low, high = TARGET_RANGES.get(d.unit, (0.0, 1_000_000.0))
    if not low <= value <= high:
        raise invalid("value", "target.out_of_range",
                      f"指标“{d.name_zh}”（单位 {d.unit}）的目标值应在 {low:.0f}–{high:.0f} 之间",
                      f"A target for {d.name_en} ({d.unit}) is between {low:.0f} and {high:.0f}")


async def set_override(session: AsyncSession, principal: Principal, code: str, scope: str, value: float,
                       source: str, note: str | None, now: datetime) -> TargetOverride:
    d = await definition(session, code)
    scope = check_scope(principal, scope)
    check_target(d, value)
    row = (await session.execute(select(TargetOverride).where(
        TargetOverride.code == code, TargetOverride.scope == scope))).scalar_one_or_none()
    if row is None:
        row = TargetOverride(code=code, scope=scope)
        session.add(row)
    row.value, row.source, row.note = value, source, note
    row.updated_by, row.updated_at = principal.caller, now
    await session.flush()
    return row


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole * 100, 2) if whole else None


async def exchange_calls(session: AsyncSession, period: Period) -> dict[str, Any]:
    """Calls through the gateway's exchange in the period, per resource, and how many were refused (from the
    gateway's `exchange.calls` events: `observations.derive_call`). Platform-wide: the exchange has no place."""
    o = Observation
    rows = (await session.execute(
        select(o.category, func.sum(o.den), func.sum(o.num))
        .where(o.kpi == "exchange_calls", o.mode == "flow", o.at >= period.start, o.at < period.end)
        .group_by(o.category))).all()
    items = sorted(({"resource": resource, "calls": int(calls or 0), "refused": int(refused or 0),
                     "refused_rate": _rate(refused or 0, calls or 0)} for resource, calls, refused in rows),
                   key=lambda i: (-i["calls"], i["resource"] or ""))
    calls, refused = sum(i["calls"] for i in items), sum(i["refused"] for i in items)
    return {"period": period.label, "period_kind": period.kind, "from": period.start, "to": period.end,
            "calls": calls, "refused": refused, "refused_rate": _rate(refused, calls), "items": items}
