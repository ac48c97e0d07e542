"""The aggregation queries over observations (never raw events) that every KPI is computed from: sums of flow
observations in a period and of stock observations alive at an instant (whole months from the rollup, the rest
from the observations), and the values of durations and ratings in time ranges."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_metrics.kpis import rollup
from svc_metrics.kpis.models import KpiDefinition, Observation
from svc_metrics.kpis.periods import Period

ALL = "all"


@dataclass(frozen=True)
class Filters:
    scope: str = ALL            # "all" or a place code (6 district / 9 street / 12 community / 15 grid digits)
    category: str | None = None
    channel: str | None = None
    group: str | None = None    # a special-group tag, or "*" for any special group


def flow_conds(period: Period) -> list:
    return [Observation.mode == "flow", Observation.at >= period.start, Observation.at < period.end]


def stock_conds(as_of: datetime) -> list:
    return [Observation.mode == "stock", Observation.at <= as_of,
            or_(Observation.end_at.is_(None), Observation.end_at > as_of)]


def filter_conds(f: Filters) -> list:
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


def scope_conds(f: Filters) -> list:
    return rollup.obs_scope_conds(Observation.place, f.scope)


def obs_codes(defn: KpiDefinition) -> list[str]:
    return (defn.params or {}).get("obs") or [defn.code]


def categories(defn: KpiDefinition, f: Filters) -> set[str | None] | None:
    cats = [f.category] if f.category else (defn.params or {}).get("categories")
    return set(cats) if cats else None


@dataclass
class Sums:
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


def merge(into: dict, rows: dict, sign: int = 1) -> None:
    for k, v in rows.items():
        cur = into.get(k)
        if cur is None:
            into[k] = [sign * x for x in v]
        else:
            for i, x in enumerate(v):
                cur[i] += sign * x


async def obs_sums(session: AsyncSession, kpis: list[str], conds: list, *, by_place: bool = False) -> dict:
    o = Observation
    group = [o.kpi, o.category, o.place] if by_place else [o.kpi, o.category]
    rows = await session.execute(select(*group, func.sum(o.num), func.sum(o.den), func.count())
                                 .where(o.kpi.in_(kpis), *conds).group_by(*group))
    w = len(group)
    return {tuple(r[:w]): [float(r[w] or 0), float(r[w + 1] or 0), int(r[w + 2])] for r in rows}


async def flow_sums(session: AsyncSession, kpis: set[str], period: Period, f: Filters, scope: str) -> Sums:
    """Flow observations in the period: whole months from the rollup, the rest (a day, a week, the edges of a
    period that is not whole months) from the observations."""
    if not kpis:
        return Sums({})
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
    where = [*rollup.obs_scope_conds(Observation.place, scope), *filter_conds(f)]
    for a, b in ranges:
        merge(out, await obs_sums(session, ks, [Observation.mode == "flow", Observation.at >= a,
                                                 Observation.at < b, *where]))
    return Sums(out)


async def stock_sums(session: AsyncSession, kpis: set[str], as_of: datetime, f: Filters, scope: str, *,
                     by_place: bool = False) -> dict:
    """Stock observations alive at `as_of` (at <= as_of < end_at): the rollup's deltas of every month before
    the one `as_of` falls in, plus that month's starts and ends up to `as_of` from the observations."""
    if not kpis:
        return {}
    ks = sorted(kpis)
    where = [*rollup.obs_scope_conds(Observation.place, scope), *filter_conds(f)]
    dim = rollup.dim_for(f.channel, f.group, f.category)
    if dim is None or by_place or not rollup.covers(scope):
        return await obs_sums(session, ks, [*stock_conds(as_of), *where], by_place=by_place)
    b = rollup.bucket_of(as_of)
    ms = rollup.month_start(b)
    out = await rollup.stock_sums(session, ks, b, dim, scope, f.category)
    merge(out, await obs_sums(session, ks, [Observation.mode == "stock", Observation.at >= ms,
                                              Observation.at <= as_of, *where]))
    merge(out, await obs_sums(session, ks, [Observation.end_at.is_not(None), Observation.end_at >= ms,
                                              Observation.end_at <= as_of, *where]), -1)
    return out


async def values_of(session: AsyncSession, kpis: set[str], ranges: list[tuple[datetime, datetime]], where: list, *,
                  grouped: bool) -> dict[tuple[str, str | None], list[tuple[float, int]]]:
    """(value, count) pairs per (kpi, category) of the flow observations in the time ranges: every value
    (durations), or counted per distinct value (a small domain such as 1–5 ratings)."""
    out: dict[tuple[str, str | None], list[tuple[float, int]]] = {}
    for start, end in ranges:
        for k, v in (await values_in(session, kpis, start, end, where, grouped=grouped)).items():
            out.setdefault(k, []).extend(v)
    return out


async def values_in(session: AsyncSession, kpis: set[str], start: datetime, end: datetime, where: list, *,
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
        for k, c, v in await plain_rows(session, select(o.kpi, o.category, o.value).where(*conds)):
            lst = out.get((k, c))
            if lst is None:
                lst = out[(k, c)] = []
            lst.append((float(v), 1))
    return out


async def plain_rows(session: AsyncSession, stmt) -> list[tuple]:
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
