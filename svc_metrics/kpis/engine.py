"""The KPI engine: aggregate observations (never raw events) for one indicator, scope, period and filters, and
judge the value against the target that applies (per-scope override, then the catalogue).

calc kinds: ratio (Σnum ÷ Σden of flow observations in the period), duration / mean (mean, median, p90 of
values), ontime (closed on time ÷ (closed + open overdue as of the period end)), stock_ratio / stock_count
(state as of the period end), distinct_ratio (distinct people in the period ÷ a stock), duplicates (resources
sharing a category and place ÷ resources).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_metrics.kpis import rollup
from svc_metrics.kpis.distribution import Distribution, Stale, bin_bounds
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
    return rollup.obs_scope_conds(Observation.place, f.scope)


def _obs(defn: KpiDefinition) -> list[str]:
    return (defn.params or {}).get("obs") or [defn.code]


def _cats(defn: KpiDefinition, f: Filters) -> set[str | None] | None:
    cats = [f.category] if f.category else (defn.params or {}).get("categories")
    return set(cats) if cats else None


@dataclass
class _Sums:
    """Σnum, Σden and count per (kpi, category)."""

    rows: dict[tuple[str, str | None], list]

    def total(self, kpis: list[str], cats: set[str] | None) -> tuple[float, float, int]:
        num = den = 0.0
        n = 0
        for (k, c), v in self.rows.items():
            if k in kpis and (cats is None or c in cats):
                num += v[0]
                den += v[1]
                n += v[2]
        return num, den, n


def _merge(into: dict, rows: dict, sign: int = 1) -> None:
    for k, v in rows.items():
        cur = into.get(k)
        if cur is None:
            into[k] = [sign * x for x in v]
        else:
            for i, x in enumerate(v):
                cur[i] += sign * x


async def _obs_sums(session: AsyncSession, kpis: list[str], conds: list, *, by_place: bool = False) -> dict:
    o = Observation
    group = [o.kpi, o.category, o.place] if by_place else [o.kpi, o.category]
    rows = await session.execute(select(*group, func.sum(o.num), func.sum(o.den), func.count())
                                 .where(o.kpi.in_(kpis), *conds).group_by(*group))
    w = len(group)
    return {tuple(r[:w]): [float(r[w] or 0), float(r[w + 1] or 0), int(r[w + 2])] for r in rows}


async def flow_sums(session: AsyncSession, kpis: set[str], period: Period, f: Filters, scope: str) -> _Sums:
    """Flow observations in the period: whole months from the rollup, the rest (a day, a week, the edges of a
    period that is not whole months) from the observations."""
    if not kpis:
        return _Sums({})
    ks = sorted(kpis)
    out: dict = {}
    dim = rollup.dim_for(f.channel, f.group, f.category)
    months = rollup.full_months(period.first, period.after) if dim is not None and rollup.covers(scope) else None
    ranges = [(period.start, period.end)]
    if months:
        lo, hi = months
        for k, v in (await rollup.flow_sums(session, ks, lo, hi, dim, scope, f.category)).items():
            out[k] = v[:3]
        ms, me = rollup.month_start(lo), rollup.month_start(rollup.next_bucket(hi))
        ranges = [r for r in ((period.start, ms), (me, period.end)) if r[0] < r[1]]
    where = [*rollup.obs_scope_conds(Observation.place, scope), *_filter_conds(f)]
    for a, b in ranges:
        _merge(out, await _obs_sums(session, ks, [Observation.mode == "flow", Observation.at >= a,
                                                 Observation.at < b, *where]))
    return _Sums(out)


async def stock_sums(session: AsyncSession, kpis: set[str], as_of: datetime, f: Filters, scope: str, *,
                     by_place: bool = False) -> dict:
    """Stock observations alive at `as_of` (at <= as_of < end_at): the rollup's deltas of every month before
    the one `as_of` falls in, plus that month's starts and ends up to `as_of` from the observations."""
    if not kpis:
        return {}
    ks = sorted(kpis)
    where = [*rollup.obs_scope_conds(Observation.place, scope), *_filter_conds(f)]
    dim = rollup.dim_for(f.channel, f.group, f.category)
    if dim is None or by_place or not rollup.covers(scope):
        return await _obs_sums(session, ks, [*_stock(as_of), *where], by_place=by_place)
    b = rollup.bucket_of(as_of)
    ms = rollup.month_start(b)
    out = await rollup.stock_sums(session, ks, b, dim, scope, f.category)
    _merge(out, await _obs_sums(session, ks, [Observation.mode == "stock", Observation.at >= ms,
                                              Observation.at <= as_of, *where]))
    _merge(out, await _obs_sums(session, ks, [Observation.end_at.is_not(None), Observation.end_at >= ms,
                                              Observation.end_at <= as_of, *where]), -1)
    return out


async def _values(session: AsyncSession, kpis: set[str], ranges: list[tuple[datetime, datetime]], where: list, *,
                  grouped: bool) -> dict[tuple[str, str | None], list[tuple[float, int]]]:
    """(value, count) pairs per (kpi, category) of the flow observations in the time ranges: every value
    (durations), or counted per distinct value (a small domain such as 1–5 ratings)."""
    out: dict[tuple[str, str | None], list[tuple[float, int]]] = {}
    for start, end in ranges:
        for k, v in (await _values_in(session, kpis, start, end, where, grouped=grouped)).items():
            out.setdefault(k, []).extend(v)
    return out


async def _values_in(session: AsyncSession, kpis: set[str], start: datetime, end: datetime, where: list, *,
                     grouped: bool) -> dict[tuple[str, str | None], list[tuple[float, int]]]:
    o = Observation
    conds = [o.kpi.in_(sorted(kpis)), o.mode == "flow", o.at >= start, o.at < end, o.value.is_not(None), *where]
    out: dict[tuple[str, str | None], list[tuple[float, int]]] = {}
    if grouped:
        rows = await session.execute(select(o.kpi, o.category, o.value, func.count()).where(*conds)
                                     .group_by(o.kpi, o.category, o.value))
        for k, c, v, n in rows:
            out.setdefault((k, c), []).append((float(v), int(n)))
    else:
        for k, c, v in await _rows(session, select(o.kpi, o.category, o.value).where(*conds)):
            lst = out.get((k, c))
            if lst is None:
                lst = out[(k, c)] = []
            lst.append((float(v), 1))
    return out


async def _rows(session: AsyncSession, stmt) -> list[tuple]:
    """Plain rows of a query over many observations: on SQLite fetched by the driver with no per-row result
    processing (thousands of values for a month at a wide scope)."""
    if session.bind.dialect.name != "sqlite":
        return list(await session.execute(stmt))
    conn = await session.connection()
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args = tuple(_sqlite_param(params[name]) for name in compiled.positiontup)
    return (await conn.exec_driver_sql(str(compiled), args)).fetchall()


def _sqlite_param(v: Any) -> Any:
    """A bound value as SQLAlchemy's SQLite types store it (UTCDateTime: naive UTC text with microseconds)."""
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(timezone.utc).replace(tzinfo=None)
        return v.isoformat(" ", "microseconds")
    return v


async def _stats(dist: Distribution, div: float, params: dict[str, Any]) -> dict[str, Any]:
    """count, and when there are values: mean, median, p90 (in the unit `div`) and the share within the
    indicator's threshold."""
    out: dict[str, Any] = {"count": dist.n}
    if dist.n:
        median, p90 = await dist.quantiles([0.5, 0.9], div)
        out.update(mean=dist.mean(div), median=median, p90=p90)
        if params.get("threshold_hours"):
            limit = float(params["threshold_hours"]) * 3600.0
            out["share_within_threshold"] = _round(await dist.count_at_most(limit) / dist.n * 100)
    return out


async def measure_many(session: AsyncSession, defs: list[KpiDefinition], period: Period, f: Filters,
                       now: datetime) -> dict[str, dict[str, Any]]:
    """The raw figures of several indicators (value plus what it was computed from) in a handful of queries:
    one per kind of aggregation, whatever the number of indicators. Sums come from the month rollup (plus the
    observations of partial months); medians, p90 and distinct counts from the observations, exactly."""
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
    flow = await flow_sums(session, kpis(scoped, ("ratio", "ontime")), period, f, f.scope)
    flow_all = await flow_sums(session, kpis(unscoped, ("ratio", "ontime")), period, f, ALL)
    stock = _Sums(await stock_sums(session, kpis(scoped, ("stock_ratio", "stock_count", "ontime"))
                                   | kpis(scoped, ("distinct_ratio",), "den_obs"), as_of, f, f.scope))
    stock_all = _Sums(await stock_sums(session, kpis(unscoped, ("stock_ratio", "stock_count", "ontime"))
                                       | kpis(unscoped, ("distinct_ratio",), "den_obs"), as_of, f, ALL))

    # Values (durations, ratings): whole months as the rollup's histograms, the partial months at the edges as
    # values; distribution.py picks exact order statistics from both. A channel or group filter has no
    # histogram of its own: then every value comes from the observations.
    no_slice = rollup.dim_for(f.channel, f.group, f.category) == ("", "")
    months_all = rollup.full_months(period.first, period.after) if no_slice else None
    spans: dict[bool, tuple[tuple[int, int] | None, tuple[datetime, datetime] | None, list]] = {}
    for is_scoped in (True, False):
        months = months_all if rollup.covers(f.scope if is_scoped else ALL) else None
        edge_ranges = [(period.start, period.end)]
        month_range = None
        if months:
            month_range = (rollup.month_start(months[0]), rollup.month_start(rollup.next_bucket(months[1])))
            edge_ranges = [r for r in ((period.start, month_range[0]), (month_range[1], period.end)) if r[0] < r[1]]
        spans[is_scoped] = (months, month_range, edge_ranges)
    values: dict[tuple[bool, str, str | None], list[tuple[float, int]]] = {}
    hists: dict[tuple[bool, str, str | None], dict[int, list[int]]] = {}
    for is_scoped, ds, where in ((True, scoped, [*scope, *filt]), (False, unscoped, filt)):
        months, month_range, edge_ranges = spans[is_scoped]
        if months:
            # Every category together where an indicator reads them all; per category where it names some.
            every, named = set(), set()
            for d in ds:
                if d.calc in ("duration", "mean"):
                    cats = _cats(d, f)
                    if cats is None:
                        every.update(_obs(d))
                    else:
                        named.update((k, c) for k in _obs(d) for c in cats if c is not None)
            reads = [(sorted(every), None)] if every else []
            if named:
                reads.append((sorted({k for k, _ in named}), sorted({c for _, c in named})))
            for ks, cs in reads:
                for (k, c), bins in (await rollup.hist_sums(session, ks, *months, f.scope if is_scoped else ALL,
                                                            cs)).items():
                    hists[(is_scoped, k, c)] = bins
        for calc, grouped in (("duration", False), ("mean", True)):
            ks = kpis(ds, (calc,))
            if ks and edge_ranges:
                # Only the categories some indicator reads (closure times: grid events; errands: three kinds).
                need: dict[str, set[str] | None] = {}
                for d in ds:
                    if d.calc == calc:
                        cats = _cats(d, f)
                        for k in _obs(d):
                            if cats is None or need.get(k, set()) is None:
                                need[k] = None
                            else:
                                need[k] = need.get(k, set()) | cats
                # One plain range read per shape (an OR of them would keep SQLite off the time index).
                wide = {k for k, cs in need.items() if cs is None}
                reads = [(wide, [])] if wide else []
                reads += [({k}, [Observation.category.in_(sorted(c for c in cs if c is not None))])
                          for k, cs in sorted(need.items(), key=lambda kv: kv[0]) if cs is not None]
                for read, extra in reads:
                    for (k, c), v in (await _values(session, read, edge_ranges, [*extra, *where],
                                                    grouped=grouped)).items():
                        values.setdefault((is_scoped, k, c), []).extend(v)

    def distribution(d: KpiDefinition, where: list) -> Distribution:
        is_scoped, obs, cats = (d.params or {}).get("scoped", True), _obs(d), _cats(d, f)
        month_range = spans[is_scoped][1]

        def mine(key: tuple[bool, str, str | None]) -> bool:
            return key[0] == is_scoped and key[1] in obs and (cats is None or key[2] in cats)

        hist: dict[int, list[int]] = {}
        for key, bins in hists.items():
            # the all-category histogram (category None) when the indicator reads every category
            if key[0] == is_scoped and key[1] in obs and (key[2] is None if cats is None else key[2] in cats):
                for b, (n, vs) in bins.items():
                    cur = hist.setdefault(b, [0, 0])
                    cur[0] += n
                    cur[1] += vs
        edges = [p for key, vs in values.items() if mine(key) for p in vs]

        async def fetch(bins: list[int]) -> list[float]:
            o = Observation
            conds = [o.kpi.in_(obs), o.mode == "flow", o.at >= month_range[0], o.at < month_range[1],
                     o.value.is_not(None), *where,
                     or_(*(and_(o.value >= lo, o.value < hi) for lo, hi in map(bin_bounds, bins)))]
            if cats:
                conds.append(o.category.in_(sorted(c for c in cats if c is not None)))
            if d.calc == "mean":
                # a small domain (1–5 ratings): one bin can hold thousands of equal values, so count them per
                # value, as _values does, instead of reading each
                stmt = select(o.value, func.count()).where(*conds).group_by(o.value)
                return [float(v) for v, n in await _rows(session, stmt) for _ in range(n)]
            return [float(v) for (v,) in await _rows(session, select(o.value).where(*conds))]

        return Distribution(hist, edges, fetch if month_range else None)

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
            div = UNIT_SECONDS.get(d.unit, 1.0) if d.calc == "duration" else 1.0
            try:
                stats = await _stats(distribution(d, where), div, params)
            except Stale:   # an ingest landed between the histogram and the bin reads: read every value
                conds = [*where]
                if cats:
                    conds.append(Observation.category.in_(sorted(c for c in cats if c is not None)))
                every = await _values(session, set(obs), [(period.start, period.end)], conds,
                                      grouped=d.calc == "mean")
                stats = await _stats(Distribution(edges=[p for vs in every.values() for p in vs]), div, params)
            fig["count"] = stats.pop("count")
            if fig["count"]:
                fig["value"] = stats[d.stat or "mean"]
                fig.update({k: _round(v, 3) if k != "share_within_threshold" else v for k, v in stats.items()})
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
            per_place = await stock_sums(session, set(obs), as_of, f, f.scope if is_scoped else ALL, by_place=True)
            counts = [v[2] for (k, c, p), v in per_place.items() if cats is None or c in cats]
            total = sum(n for n in counts if n > 0)
            dup = sum(n for n in counts if n > 1)
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


def catalogue_target(defn: KpiDefinition, group: str | None, channel: str | None = None) -> dict[str, Any] | None:
    """A channel's own target (the kiosk wait of errand_time) when that channel is asked for, then a special
    group's, then the first general one."""
    targets = defn.targets or []
    if channel:
        for t in targets:
            if t.get("channel") == channel:
                return t
    if group:
        for t in targets:
            if t.get("group") in (group, "*") and not t.get("channel"):
                return t
    return next((t for t in targets if not t.get("group") and not t.get("channel")), None)


def pick_target(defn: KpiDefinition, overrides: list[TargetOverride], f: Filters) -> dict[str, Any] | None:
    """The most specific override whose scope contains the query's scope, else the catalogue's target."""
    def rank(o: TargetOverride) -> int:
        return 0 if o.scope == ALL else len(o.scope)
    fits = [o for o in overrides if o.code == defn.code
            and (o.scope == ALL or (f.scope != ALL and f.scope.startswith(o.scope)))]
    if fits:
        best = max(fits, key=rank)
        return {"value": best.value, "source": best.source, "note": best.note, "override_scope": best.scope}
    return catalogue_target(defn, f.group, f.channel)


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
