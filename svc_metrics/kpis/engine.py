"""The KPI engine: aggregate observations (never raw events) for one indicator, scope, period and filters, and
judge the value against the target that applies (per-scope override, then the catalogue).

calc kinds: ratio (Σnum ÷ Σden of flow observations in the period), duration / mean (mean, median, p90 of
values), ontime (closed on time ÷ (closed + open overdue as of the period end)), stock_ratio / stock_count
(state as of the period end), distinct_ratio (distinct people in the period ÷ a stock), duplicates (resources
sharing a category and place ÷ resources).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_metrics.kpis.models import KpiDefinition, Observation, TargetOverride
from svc_metrics.kpis.periods import Period

UNIT_SECONDS = {"h": 3600.0, "min": 60.0}
STATUS = {"met": ("达标", "Met"), "warning": ("预警", "Warning"), "missed": ("未达标", "Missed")}
ALL = "all"


@dataclass(frozen=True)
class Filters:
    scope: str = ALL            # "all" or a place code (6 district / 9 street / 12 community / 15 grid digits)
    category: str | None = None
    channel: str | None = None
    group: str | None = None    # a special-group tag, or "*" for any special group


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _flow(period: Period) -> list:
    return [Observation.mode == "flow", Observation.at >= period.start, Observation.at < period.end]


def _stock(as_of: datetime) -> list:
    return [Observation.mode == "stock", Observation.at <= as_of,
            or_(Observation.end_at.is_(None), Observation.end_at > as_of)]


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def _filter_conds(f: Filters) -> list:
    conds = []
    if f.category:
        conds.append(Observation.category == f.category)
    if f.channel:
        conds.append(Observation.channel == f.channel)
    if f.group == "*":
        conds.append(Observation.groups != "")
    elif f.group:
        conds.append(Observation.groups.like(f"%,{f.group},%"))
    return conds


def _scope_conds(f: Filters) -> list:
    if f.scope == ALL:
        return []
    return [Observation.place >= f.scope, Observation.place < f.scope + ":"]


def _obs(defn: KpiDefinition) -> list[str]:
    return (defn.params or {}).get("obs") or [defn.code]


def _cats(defn: KpiDefinition, f: Filters) -> set[str | None] | None:
    cats = [f.category] if f.category else (defn.params or {}).get("categories")
    return set(cats) if cats else None


@dataclass
class _Sums:
    """Σnum, Σden and count per (kpi, category)."""

    rows: dict[tuple[str, str | None], tuple[float, float, int]]

    def total(self, kpis: list[str], cats: set[str] | None) -> tuple[float, float, int]:
        num = den = 0.0
        n = 0
        for (k, c), (a, b, m) in self.rows.items():
            if k in kpis and (cats is None or c in cats):
                num += a
                den += b
                n += m
        return num, den, n


async def _sums(session: AsyncSession, kpis: set[str], window: list, where: list) -> _Sums:
    if not kpis:
        return _Sums({})
    rows = (await session.execute(
        select(Observation.kpi, Observation.category, func.sum(Observation.num), func.sum(Observation.den),
               func.count())
        .where(Observation.kpi.in_(sorted(kpis)), *window, *where)
        .group_by(Observation.kpi, Observation.category))).all()
    return _Sums({(k, c): (float(a or 0), float(b or 0), int(n)) for k, c, a, b, n in rows})


async def measure_many(session: AsyncSession, defs: list[KpiDefinition], period: Period, f: Filters,
                       now: datetime) -> dict[str, dict[str, Any]]:
    """The raw figures of several indicators (value plus what it was computed from) in a handful of queries:
    one per kind of aggregation over the observations, whatever the number of indicators."""
    as_of = min(period.end, now)
    filt = _filter_conds(f)
    scoped = [d for d in defs if (d.params or {}).get("scoped", True)]
    unscoped = [d for d in defs if not (d.params or {}).get("scoped", True)]

    def kpis(ds: list[KpiDefinition], calcs: tuple[str, ...], key: str = "obs") -> set[str]:
        out: set[str] = set()
        for d in ds:
            if d.calc in calcs:
                out.update(_obs(d) if key == "obs" else ((d.params or {}).get(key) or []))
        return out

    scope = _scope_conds(f)
    flow = await _sums(session, kpis(scoped, ("ratio", "ontime")), _flow(period), [*scope, *filt])
    flow_all = await _sums(session, kpis(unscoped, ("ratio", "ontime")), _flow(period), filt)
    stock = await _sums(session, kpis(scoped, ("stock_ratio", "stock_count", "ontime"))
                        | kpis(scoped, ("distinct_ratio",), "den_obs"), _stock(as_of), [*scope, *filt])
    stock_all = await _sums(session, kpis(unscoped, ("stock_ratio", "stock_count", "ontime"))
                            | kpis(unscoped, ("distinct_ratio",), "den_obs"), _stock(as_of), filt)

    values: dict[tuple[str, str | None], list[float]] = {}
    for ds, where in ((scoped, [*scope, *filt]), (unscoped, filt)):
        dur = kpis(ds, ("duration", "mean"))
        if dur:
            for k, c, v in (await session.execute(select(Observation.kpi, Observation.category, Observation.value).where(
                    Observation.kpi.in_(sorted(dur)), *_flow(period), Observation.value.is_not(None), *where))):
                values.setdefault((k, c), []).append(float(v))

    out: dict[str, dict[str, Any]] = {}
    for d in defs:
        params = d.params or {}
        is_scoped = params.get("scoped", True)
        obs, cats = _obs(d), _cats(d, f)
        pct = 100.0 if d.unit == "%" else 1.0
        fig: dict[str, Any] = {"value": None, "numerator": None, "denominator": None, "count": 0}
        where = [*scope, *filt] if is_scoped else filt
        if d.calc in ("ratio", "ontime", "stock_ratio", "stock_count"):
            src = (stock if is_scoped else stock_all) if d.calc.startswith("stock") else (flow if is_scoped else flow_all)
            num, den, n = src.total(obs, cats)
            if d.calc == "ontime":
                _, overdue, _ = (stock if is_scoped else stock_all).total(obs, cats)
                fig["closed"] = den
                fig["open_overdue"] = overdue
                den += overdue
            fig.update(numerator=num, denominator=den, count=n)
            if d.calc == "stock_count":
                fig["value"] = num
            elif den > 0:
                fig["value"] = num / den * pct
        elif d.calc in ("duration", "mean"):
            raw = [v for (k, c), vs in values.items() if k in obs and (cats is None or c in cats) for v in vs]
            div = UNIT_SECONDS.get(d.unit, 1.0) if d.calc == "duration" else 1.0
            scaled = [v / div for v in raw]
            fig["count"] = len(scaled)
            if scaled:
                stats = {"mean": statistics.fmean(scaled), "median": statistics.median(scaled),
                         "p90": percentile(scaled, 0.9)}
                fig.update({k: _round(v, 3) for k, v in stats.items()})
                fig["value"] = stats[d.stat or "mean"]
                if params.get("threshold_hours"):
                    limit = float(params["threshold_hours"]) * 3600.0
                    fig["share_within_threshold"] = _round(sum(1 for v in raw if v <= limit) / len(raw) * 100)
        elif d.calc == "distinct_ratio":
            conds = [Observation.kpi.in_(obs), *_flow(period), *where]
            if cats:
                conds.append(Observation.category.in_(sorted(c for c in cats if c is not None)))
            active = (await session.execute(select(func.count(func.distinct(Observation.key))).where(*conds))).scalar_one()
            _, base, _ = (stock if is_scoped else stock_all).total(params.get("den_obs") or [], cats)
            fig.update(numerator=float(active), denominator=float(base), count=int(active))
            if base:
                fig["value"] = active / float(base) * pct
        elif d.calc == "duplicates":
            conds = [Observation.kpi.in_(obs), *_stock(as_of), *where]
            if cats:
                conds.append(Observation.category.in_(sorted(c for c in cats if c is not None)))
            groups = (await session.execute(select(Observation.category, Observation.place, func.count()).where(
                *conds).group_by(Observation.category, Observation.place))).all()
            total = sum(n for *_, n in groups)
            dup = sum(n for *_, n in groups if n > 1)
            fig.update(numerator=float(dup), denominator=float(total), count=total)
            if total:
                fig["value"] = dup / total * pct
        else:
            raise ValueError(f"unknown calc {d.calc}")
        fig["value"] = _round(fig["value"])
        out[d.code] = fig
    return out


async def measure(session: AsyncSession, defn: KpiDefinition, period: Period, f: Filters,
                  now: datetime) -> dict[str, Any]:
    """The raw figures of one indicator: value plus what it was computed from."""
    return (await measure_many(session, [defn], period, f, now))[defn.code]


def catalogue_target(defn: KpiDefinition, group: str | None) -> dict[str, Any] | None:
    targets = defn.targets or []
    if group:
        for t in targets:
            if t.get("group") in (group, "*"):
                return t
    return next((t for t in targets if not t.get("group")), None)


def pick_target(defn: KpiDefinition, overrides: list[TargetOverride], f: Filters) -> dict[str, Any] | None:
    """The most specific override whose scope contains the query's scope, else the catalogue's target."""
    def rank(o: TargetOverride) -> int:
        return 0 if o.scope == ALL else len(o.scope)
    fits = [o for o in overrides if o.code == defn.code
            and (o.scope == ALL or (f.scope != ALL and f.scope.startswith(o.scope)))]
    if fits:
        best = max(fits, key=rank)
        return {"value": best.value, "source": best.source, "note": best.note, "override_scope": best.scope}
    return catalogue_target(defn, f.group)


def judge(defn: KpiDefinition, value: float | None, target: float | None) -> str | None:
    if value is None or target is None:
        return None
    band = defn.warn_ratio if defn.warn_ratio is not None else 0.1
    if defn.direction == "higher":
        if value >= target:
            return "met"
        return "warning" if value >= target * (1 - band) else "missed"
    if value <= target:
        return "met"
    return "warning" if value <= target * (1 + band) else "missed"


def describe(defn: KpiDefinition) -> dict[str, Any]:
    return {"code": defn.code, "name_zh": defn.name_zh, "name_en": defn.name_en, "unit": defn.unit,
            "direction": defn.direction, "definition_zh": defn.definition_zh, "definition_en": defn.definition_en,
            "stat": defn.stat if defn.calc in ("duration", "mean") else None, "baseline": defn.baseline,
            "targets": defn.targets, "sources": defn.sources}


async def evaluate(session: AsyncSession, defn: KpiDefinition, period: Period, f: Filters, now: datetime,
                   overrides: list[TargetOverride]) -> dict[str, Any]:
    return judged(defn, await measure(session, defn, period, f, now), f, overrides)


async def evaluate_many(session: AsyncSession, defs: list[KpiDefinition], period: Period, f: Filters,
                        now: datetime, overrides: list[TargetOverride]) -> list[dict[str, Any]]:
    figures = await measure_many(session, defs, period, f, now)
    return [judged(d, figures[d.code], f, overrides) for d in defs]


def judged(defn: KpiDefinition, figures: dict[str, Any], f: Filters,
           overrides: list[TargetOverride]) -> dict[str, Any]:
    target = pick_target(defn, overrides, f)
    status = judge(defn, figures["value"], target["value"] if target else None)
    return {"code": defn.code, "name_zh": defn.name_zh, "name_en": defn.name_en, "unit": defn.unit,
            "direction": defn.direction, **figures, "target": target, "baseline": defn.baseline,
            "status": status, "status_zh": STATUS[status][0] if status else None,
            "status_en": STATUS[status][1] if status else None}
