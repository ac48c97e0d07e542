"""Measuring indicators: aggregate observations for one or several indicators, scope, period and filters, and judge
each value against the target that applies (`targets`).

calc kinds: ratio (Σnum ÷ Σden of flow observations in the period), duration / mean (mean, median, p90 of
values), ontime (closed on time ÷ (closed + open overdue as of the period end)), stock_ratio / stock_count
(state as of the period end), distinct_ratio (distinct people in the period ÷ a stock), duplicates (resources
sharing a category and place ÷ resources), count (Σnum of flow observations in the period, per category too;
per month of the period and per community of the scope where the indicator says so), open_time (Σnum of flow
observations ÷ a stock's minutes per week scaled to the time it was open in the period up to now).

`measure_many` reads in a handful of queries whatever the number of indicators: the sums (`SumReads`), the
values and histograms of durations and ratings (`ValueReads`), then computes each indicator's figures from them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_metrics.kpis import queries, rollup
from svc_metrics.kpis.distribution import Distribution, Stale, bin_bounds
from svc_metrics.kpis.models import KpiDefinition, Observation, TargetOverride
from svc_metrics.kpis.periods import Period
from svc_metrics.kpis.queries import ALL, Filters, Sums, categories, obs_codes
from svc_metrics.kpis.targets import judged
from svc_metrics.surveys import results as surveys

# Satisfaction has two sources, kept apart and both shown: ratings of requests (the value) and the quarterly
# surveys (`by_source.survey`, svc_metrics/surveys); the survey figure of each is its rate or its mean score.
SURVEY_SOURCED = {"satisfaction_rate": "value", "satisfaction_score": "score"}

UNIT_SECONDS = {"h": 3600.0, "min": 60.0}
Key = tuple[bool, str, str | None]  # (scoped, kpi, category)


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def _scoped(d: KpiDefinition) -> bool:
    return (d.params or {}).get("scoped", True)


def _kpis(ds: list[KpiDefinition], calcs: tuple[str, ...], key: str = "obs") -> set[str]:
    """The observation codes (or the `key` parameter's codes) of the indicators of the given calc kinds."""
    out: set[str] = set()
    for d in ds:
        if d.calc in calcs:
            out.update(obs_codes(d) if key == "obs" else ((d.params or {}).get(key) or []))
    return out


@dataclass
class SumReads:
    """Flow sums in the period and stock sums at its end, for the scoped indicators (in the query's scope) and
    the unscoped ones (platform-wide)."""

    flow: Sums
    flow_all: Sums
    stock: Sums
    stock_all: Sums

    @classmethod
    async def read(cls, session: AsyncSession, scoped: list[KpiDefinition], unscoped: list[KpiDefinition],
                   period: Period, f: Filters, as_of: datetime) -> "SumReads":
        flow_calcs, stock_calcs = ("ratio", "ontime", "count", "open_time"), ("stock_ratio", "stock_count", "ontime")
        flow = await queries.flow_sums(session, _kpis(scoped, flow_calcs), period, f, f.scope)
        flow_all = await queries.flow_sums(session, _kpis(unscoped, flow_calcs), period, f, ALL)
        stock = Sums(await queries.stock_sums(session, _kpis(scoped, stock_calcs)
                                              | _kpis(scoped, ("distinct_ratio",), "den_obs"), as_of, f, f.scope))
        stock_all = Sums(await queries.stock_sums(session, _kpis(unscoped, stock_calcs)
                                                  | _kpis(unscoped, ("distinct_ratio",), "den_obs"), as_of, f, ALL))
        return cls(flow, flow_all, stock, stock_all)

    def flows(self, is_scoped: bool) -> Sums:
        return self.flow if is_scoped else self.flow_all

    def stocks(self, is_scoped: bool) -> Sums:
        return self.stock if is_scoped else self.stock_all


@dataclass
class ValueReads:
    """Values (durations, ratings): whole months as the rollup's histograms, the partial months at the edges as
    values; `distribution` gives exact order statistics from both. A channel or group filter has no histogram of
    its own: then every value comes from the observations."""

    session: AsyncSession
    f: Filters
    spans: dict[bool, tuple[tuple[int, int] | None, tuple[datetime, datetime] | None, list]] = field(
        default_factory=dict)
    values: dict[Key, list[tuple[float, int]]] = field(default_factory=dict)
    hists: dict[Key, dict[int, list[int]]] = field(default_factory=dict)

    @classmethod
    async def read(cls, session: AsyncSession, scoped: list[KpiDefinition], unscoped: list[KpiDefinition],
                   period: Period, f: Filters, filt: list, scope: list) -> "ValueReads":
        out = cls(session, f)
        no_slice = rollup.dim_for(f.channel, f.group, f.category) == ("", "")
        months_all = rollup.full_months(period.first, period.after) if no_slice else None
        for is_scoped in (True, False):
            months = months_all if rollup.covers(f.scope if is_scoped else ALL) else None
            edge_ranges = [(period.start, period.end)]
            month_range = None
            if months:
                month_range = (rollup.month_start(months[0]), rollup.month_start(rollup.next_bucket(months[1])))
                edge_ranges = [r for r in ((period.start, month_range[0]), (month_range[1], period.end))
                               if r[0] < r[1]]
            out.spans[is_scoped] = (months, month_range, edge_ranges)
        for is_scoped, ds, where in ((True, scoped, [*scope, *filt]), (False, unscoped, filt)):
            months, _, edge_ranges = out.spans[is_scoped]
            if months:
                await out._read_hists(ds, is_scoped, months)
            for calc, grouped in (("duration", False), ("mean", True)):
                ks = _kpis(ds, (calc,))
                if ks and edge_ranges:
                    await out._read_edges(ds, calc, grouped, is_scoped, edge_ranges, where)
        return out

    async def _read_hists(self, ds: list[KpiDefinition], is_scoped: bool, months: tuple[int, int]) -> None:
        # Every category together where an indicator reads them all; per category where it names some.
        every, named = set(), set()
        for d in ds:
            if d.calc in ("duration", "mean"):
                cats = categories(d, self.f)
                if cats is None:
                    every.update(obs_codes(d))
                else:
                    named.update((k, c) for k in obs_codes(d) for c in cats if c is not None)
        reads = [(sorted(every), None)] if every else []
        if named:
            reads.append((sorted({k for k, _ in named}), sorted({c for _, c in named})))
        for ks, cs in reads:
            for (k, c), bins in (await rollup.hist_sums(self.session, ks, *months,
                                                        self.f.scope if is_scoped else ALL, cs)).items():
                self.hists[(is_scoped, k, c)] = bins

    async def _read_edges(self, ds: list[KpiDefinition], calc: str, grouped: bool, is_scoped: bool,
                          edge_ranges: list, where: list) -> None:
        # Only the categories some indicator reads (closure times: grid events; errands: three kinds).
        need: dict[str, set[str] | None] = {}
        for d in ds:
            if d.calc == calc:
                cats = categories(d, self.f)
                for k in obs_codes(d):
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
            for (k, c), v in (await queries.values_of(self.session, read, edge_ranges, [*extra, *where],
                                                      grouped=grouped)).items():
                self.values.setdefault((is_scoped, k, c), []).extend(v)

    def distribution(self, d: KpiDefinition, where: list) -> Distribution:
        is_scoped, obs, cats = _scoped(d), obs_codes(d), categories(d, self.f)
        month_range = self.spans[is_scoped][1]
        session = self.session

        def mine(key: Key) -> bool:
            return key[0] == is_scoped and key[1] in obs and (cats is None or key[2] in cats)

        hist: dict[int, list[int]] = {}
        for key, bins in self.hists.items():
            # the all-category histogram (category None) when the indicator reads every category
            if key[0] == is_scoped and key[1] in obs and (key[2] is None if cats is None else key[2] in cats):
                for b, (n, vs) in bins.items():
                    cur = hist.setdefault(b, [0, 0])
                    cur[0] += n
                    cur[1] += vs
        edges = [p for key, vs in self.values.items() if mine(key) for p in vs]

        async def fetch(bins: list[int]) -> list[float]:
            o = Observation
            conds = [o.kpi.in_(obs), o.mode == "flow", o.at >= month_range[0], o.at < month_range[1],
                     o.value.is_not(None), *where,
                     or_(*(and_(o.value >= lo, o.value < hi) for lo, hi in map(bin_bounds, bins)))]
            if cats:
                conds.append(o.category.in_(sorted(c for c in cats if c is not None)))
            if d.calc == "mean":
                # a small domain (1–5 ratings): one bin can hold thousands of equal values, so count them per
                # value, as values_of does, instead of reading each
                stmt = select(o.value, func.count()).where(*conds).group_by(o.value)
                return [float(v) for v, n in await queries.plain_rows(session, stmt) for _ in range(n)]
            return [float(v) for (v,) in await queries.plain_rows(session, select(o.value).where(*conds))]

        return Distribution(hist, edges, fetch if month_range else None)


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


def _sum_figures(d: KpiDefinition, fig: dict[str, Any], sums: SumReads, cats, pct: float) -> None:
    is_scoped, obs = _scoped(d), obs_codes(d)
    src = sums.stocks(is_scoped) if d.calc.startswith("stock") else sums.flows(is_scoped)
    num, den, n = src.total(obs, cats)
    if d.calc == "ontime":
        _, overdue, _ = sums.stocks(is_scoped).total(obs, cats)
        fig["closed"] = den
        fig["open_overdue"] = overdue
        den += overdue
    fig.update(numerator=num, denominator=den, count=n)
    if d.calc == "stock_count":
        fig["value"] = num
    elif den > 0:
        fig["value"] = num / den * pct


async def _value_figures(session: AsyncSession, d: KpiDefinition, fig: dict[str, Any], reads: ValueReads,
                         period: Period, where: list, cats) -> None:
    params = d.params or {}
    div = UNIT_SECONDS.get(d.unit, 1.0) if d.calc == "duration" else 1.0
    try:
        stats = await _stats(reads.distribution(d, where), div, params)
    except Stale:   # an ingest landed between the histogram and the bin reads: read every value
        conds = [*where]
        if cats:
            conds.append(Observation.category.in_(sorted(c for c in cats if c is not None)))
        every = await queries.values_of(session, set(obs_codes(d)), [(period.start, period.end)], conds,
                                        grouped=d.calc == "mean")
        stats = await _stats(Distribution(edges=[p for vs in every.values() for p in vs]), div, params)
    fig["count"] = stats.pop("count")
    if fig["count"]:
        fig["value"] = stats[d.stat or "mean"]
        fig.update({k: _round(v, 3) if k != "share_within_threshold" else v for k, v in stats.items()})


async def _distinct_figures(session: AsyncSession, d: KpiDefinition, fig: dict[str, Any], sums: SumReads,
                            period: Period, where: list, cats, pct: float) -> None:
    conds = [Observation.kpi.in_(obs_codes(d)), *queries.flow_conds(period), *where]
    if cats:
        conds.append(Observation.category.in_(sorted(c for c in cats if c is not None)))
    active = (await session.execute(select(func.count(func.distinct(Observation.key))).where(*conds))).scalar_one()
    _, base, _ = sums.stocks(_scoped(d)).total((d.params or {}).get("den_obs") or [], cats)
    fig.update(numerator=float(active), denominator=float(base), count=int(active))
    if base:
        fig["value"] = active / float(base) * pct


async def _duplicate_figures(session: AsyncSession, d: KpiDefinition, fig: dict[str, Any], as_of: datetime,
                             f: Filters, cats, pct: float) -> None:
    per_place = await queries.stock_sums(session, set(obs_codes(d)), as_of, f, f.scope if _scoped(d) else ALL,
                                         by_place=True)
    counts = [v[2] for (k, c, p), v in per_place.items() if cats is None or c in cats]
    total = sum(n for n in counts if n > 0)
    dup = sum(n for n in counts if n > 1)
    fig.update(numerator=float(dup), denominator=float(total), count=total)
    if total:
        fig["value"] = dup / total * pct


async def _count_figures(session: AsyncSession, d: KpiDefinition, fig: dict[str, Any], sums: SumReads,
                         period: Period, f: Filters, as_of: datetime, cats) -> None:
    """A count in the period, and `by_category`; `per_month` divides it by the period's months, `per_community`
    (a stock of communities) by the communities of the scope: one for a community or a grid, else those the stock
    holds at the period's end (at least one)."""
    params, obs = d.params or {}, obs_codes(d)
    src = sums.flows(_scoped(d))
    num, _, n = src.total(obs, cats)
    by_category: dict[str, float] = {}
    for (k, c), v in src.rows.items():
        if k in obs and (cats is None or c in cats) and v[0]:
            by_category[c or ""] = by_category.get(c or "", 0.0) + v[0]
    fig.update(numerator=num, count=n, value=num, by_category=dict(sorted(by_category.items())))
    per = period.months if params.get("per_month") else 1.0
    scope = f.scope if _scoped(d) else ALL
    if params.get("per_community") and (scope == ALL or len(scope) < 12):
        stock = await queries.stock_sums(session, {params["per_community"]}, as_of, Filters(scope=scope), scope)
        fig["communities"] = max(1.0, sum(v[0] for v in stock.values()))
        per *= fig["communities"]
    if per != 1.0 or params.get("per_month"):
        fig["denominator"] = _round(per, 4)
        fig["value"] = num / per if per else None


async def _open_time_figures(session: AsyncSession, d: KpiDefinition, fig: dict[str, Any], sums: SumReads,
                             period: Period, as_of: datetime, where: list, cats, pct: float) -> None:
    """Σnum of the flow observations ÷ the `den_obs` stocks' minutes per week (den), each scaled to the part of
    the period, up to `as_of`, it was open in."""
    num, _, n = sums.flows(_scoped(d)).total(obs_codes(d), cats)
    o = Observation
    conds = [o.kpi.in_((d.params or {}).get("den_obs") or []), o.mode == "stock", o.at < as_of,
             or_(o.end_at.is_(None), o.end_at > period.start), *where]
    if cats:
        conds.append(o.category.in_(sorted(c for c in cats if c is not None)))
    den = 0.0
    for week, at, end in await session.execute(select(o.den, o.at, o.end_at).where(*conds)):
        open_s = (min(end or as_of, as_of) - max(at, period.start)).total_seconds()
        den += float(week or 0) * max(0.0, open_s) / (7 * 86400)
    fig.update(numerator=num, denominator=_round(den), count=n)
    if den > 0:
        fig["value"] = num / den * pct


async def measure_many(session: AsyncSession, defs: list[KpiDefinition], period: Period, f: Filters,
                       now: datetime, *, min_group: int) -> dict[str, dict[str, Any]]:
    """The raw figures of several indicators (value plus what it was computed from) in a handful of queries:
    one per kind of aggregation, whatever the number of indicators. Sums come from the month rollup (plus the
    observations of partial months); medians, p90 and distinct counts from the observations, exactly.
    `min_group` is the surveys' minimum group size (settings.survey_min_group) the survey source is withheld by."""
    as_of = min(period.end, now)
    filt, scope = queries.filter_conds(f), queries.scope_conds(f)
    scoped = [d for d in defs if _scoped(d)]
    unscoped = [d for d in defs if not _scoped(d)]
    sums = await SumReads.read(session, scoped, unscoped, period, f, as_of)
    reads = await ValueReads.read(session, scoped, unscoped, period, f, filt, scope)

    out: dict[str, dict[str, Any]] = {}
    for d in defs:
        cats = categories(d, f)
        pct = 100.0 if d.unit == "%" else 1.0
        fig: dict[str, Any] = {"value": None, "numerator": None, "denominator": None, "count": 0}
        where = [*scope, *filt] if _scoped(d) else filt
        if d.calc in ("ratio", "ontime", "stock_ratio", "stock_count"):
            _sum_figures(d, fig, sums, cats, pct)
        elif d.calc in ("duration", "mean"):
            await _value_figures(session, d, fig, reads, period, where, cats)
        elif d.calc == "distinct_ratio":
            await _distinct_figures(session, d, fig, sums, period, where, cats, pct)
        elif d.calc == "duplicates":
            await _duplicate_figures(session, d, fig, as_of, f, cats, pct)
        elif d.calc == "count":
            await _count_figures(session, d, fig, sums, period, f, as_of, cats)
        elif d.calc == "open_time":
            await _open_time_figures(session, d, fig, sums, period, as_of, where, cats, pct)
        else:
            raise ValueError(f"unknown calc {d.calc}")
        fig["value"] = _round(fig["value"])
        if d.code in SURVEY_SOURCED:
            sv = await surveys.satisfaction(session, f.scope, period, min_group)
            fig["by_source"] = {"ratings": {"value": fig["value"], "count": fig["count"]},
                                "survey": {"value": sv[SURVEY_SOURCED[d.code]], "count": int(sv["denominator"]),
                                           "surveys": sv["surveys"], "respondents": sv["respondents"],
                                           "shown": sv["shown"], "withheld": sv["withheld"],
                                           **({"note": sv["note"]} if "note" in sv else {})}}
        out[d.code] = fig
    return out


async def measure(session: AsyncSession, defn: KpiDefinition, period: Period, f: Filters,
                  now: datetime, *, min_group: int) -> dict[str, Any]:
    """The raw figures of one indicator: value plus what it was computed from."""
    return (await measure_many(session, [defn], period, f, now, min_group=min_group))[defn.code]


async def evaluate(session: AsyncSession, defn: KpiDefinition, period: Period, f: Filters, now: datetime,
                   overrides: list[TargetOverride], *, min_group: int) -> dict[str, Any]:
    return judged(defn, await measure(session, defn, period, f, now, min_group=min_group), f, overrides)


async def evaluate_many(session: AsyncSession, defs: list[KpiDefinition], period: Period, f: Filters,
                        now: datetime, overrides: list[TargetOverride], *, min_group: int) -> list[dict[str, Any]]:
    figures = await measure_many(session, defs, period, f, now, min_group=min_group)
    return [judged(d, figures[d.code], f, overrides) for d in defs]
