"""Month rollups of the observations (table kpi_rollups, see models.Rollup).

Ingest knows each touched entity's observations before and after the batch (both derived by the same pure
function from its events), so the rollup changes by exactly their difference: one upsert per changed key,
`num = num + excluded.num …`. The rebuild recomputes them from scratch through the same code, so both paths
give the same rows; the sums are of integer counts and integer millionths, hence independent of order.

Queries (queries.py) read whole months from here and only the partial months at a period's edges (a day or a
week, the as-of moment of a stock) from the observations.

Rows are kept per district and per street ("*" + the code): a query for either reads exactly its rows.
Communities and grids are answered from the observations (few rows through the place index). The whole
platform has no rows of its own: it is the sum of its districts and of "*", where the facts with no district
go (table kpi_rollup_top_places lists them), which spares ingest a third of its upserts.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.bulk_insert import json_rows, sqlite_json_insert
from svc_metrics.kpis.distribution import bin_of
from svc_metrics.kpis.observations import Obs
from svc_metrics.kpis.models import Rollup, RollupTopPlace

SHANGHAI_OFFSET = timedelta(hours=8)   # Asia/Shanghai has had no daylight saving time since 1991
MICRO = 1_000_000
# The value histograms (distribution.py): dimval is the bin, n its count, vsum its sum. "hist" adds up every
# category (category ""), what most indicators read; "histc" keeps them apart, for the indicators and filters
# that name categories.
HIST, HIST_BY_CATEGORY = "hist", "histc"
COLUMNS = ("kpi", "mode", "dim", "place", "bucket", "dimval", "category", "num", "den", "n", "vsum", "vn")
Key = tuple[str, str, str, str, int, str, str]   # kpi, mode, dim, place, bucket, dimval, category


def bucket_of(at: datetime) -> int:
    """yyyymm of the Asia/Shanghai month `at` (aware, or naive UTC) falls in."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    d = at + SHANGHAI_OFFSET
    return d.year * 100 + d.month


def month_start(bucket: int) -> datetime:
    """The UTC instant the Asia/Shanghai month `bucket` begins."""
    return datetime(bucket // 100, bucket % 100, 1, tzinfo=timezone.utc) - SHANGHAI_OFFSET


def bucket_of_day(day: date) -> int:
    return day.year * 100 + day.month


def next_bucket(bucket: int) -> int:
    y, m = divmod(bucket, 100)
    return (y + 1) * 100 + 1 if m == 12 else bucket + 1


def dims(channel: str | None, groups: str) -> list[tuple[str, str]]:
    out = [("", "")]
    if channel:
        out.append(("channel", channel[:48]))
    if groups:
        tags = [t for t in groups.split(",") if t]
        out.extend(("group", t[:48]) for t in tags)
        if tags:
            out.append(("group", "*"))
    return out



LEVELS = (6, 9)   # district and street (GB/T 2260); communities and grids are read from the observations
AGGREGATE = "*"
_levels: dict[str, tuple[str, ...]] = {}


def levels_of(place: str) -> tuple[str, ...]:
    """The rollup places an observation at `place` counts under: its district and its street, or "*" when it
    has no district."""
    out = _levels.get(place)
    if out is None:
        out = tuple(AGGREGATE + place[:n] for n in LEVELS if len(place) >= n) or (AGGREGATE,)
        if len(_levels) < 100_000:
            _levels[place] = out
    return out


def is_top(place: str) -> bool:
    """Whether rows at this rollup place are part of the platform's sum (a district, or "*")."""
    return len(place) == 1 + LEVELS[0] or place == AGGREGATE


def top_places(rows: list[tuple]) -> list[str]:
    """The platform's places among these rows (from `nonzero`), for kpi_rollup_top_places."""
    return sorted({r[3] for r in rows if is_top(r[3])})


def at_scope(scope: str):
    """The condition on Rollup.place for the rows that add up everything in `scope` ("all" or a place code)."""
    if scope == "all":
        return Rollup.place.in_(select(RollupTopPlace.place).scalar_subquery())
    return Rollup.place == AGGREGATE + scope


def covers(scope: str) -> bool:
    """Whether the rollup holds this scope (the platform, a district, a street)."""
    return scope == "all" or len(scope) in LEVELS


@functools.cache
def category_inputs() -> frozenset[str]:
    """The observation inputs some indicator reads per category (`params.categories` in catalogue.json: closure
    times of grid events, of errands; resolution of disputes). Only their channel and group slices keep the
    categories apart; for every other input a channel or group slice adds up all categories, a quarter fewer
    rows to write per event. A query filtered by a category and by a channel or group reads the observations
    (dim_for). The catalogue ships with the code: a release that changes it runs `onenet metrics rebuild`."""
    from svc_metrics.kpis.service import catalogue_file

    out: set[str] = set()
    for item in catalogue_file():
        params = item.get("params") or {}
        if params.get("categories"):
            out.update(params.get("obs") or [item["code"]])
    return frozenset(out)


def contribute(acc: dict[Key, list], observations: Iterable[Obs], sign: int = 1) -> None:
    """Add (sign=1) or take away (sign=-1) what these observations put into the rollup."""
    changes: list[tuple[Key, tuple]] = []   # gathered first, added in one tight loop (the ingest's hot spot)
    put = changes.append
    per_category = category_inputs()
    for o in observations:
        places, cat, kpi = levels_of(o.place or ""), (o.category or "")[:48], o.kpi
        # the category of each slice's rows: kept in "" (all), and in channel and group only where read per category
        ds = [(d, dv, cat if not d or kpi in per_category else "") for d, dv in dims(o.channel, o.groups)]
        b = bucket_of(o.at)
        if o.mode == "flow":
            vs = 0 if o.value is None else round(o.value * MICRO)
            row = (sign * o.num, sign * o.den, sign, sign * vs, 0 if o.value is None else sign)
            for d, dv, c in ds:
                for p in places:
                    put(((kpi, "flow", d, p, b, dv, c), row))
            if o.value is not None:
                hb, hrow = str(bin_of(o.value)), (0, 0, sign, sign * vs, sign)
                for p in places:
                    put(((kpi, "flow", HIST, p, b, hb, ""), hrow))
                    put(((kpi, "flow", HIST_BY_CATEGORY, p, b, hb, cat), hrow))
        else:
            row = (sign * o.num, sign * o.den, sign, 0, 0)
            for d, dv, c in ds:
                for p in places:
                    put(((kpi, "stock", d, p, b, dv, c), row))
            if o.end_at is not None:
                e, neg = bucket_of(o.end_at), (-sign * o.num, -sign * o.den, -sign, 0, 0)
                for d, dv, c in ds:
                    for p in places:
                        put(((kpi, "stock", d, p, e, dv, c), neg))
    _accumulate(acc, changes)


def _accumulate(acc: dict[Key, list], changes: list[tuple[Key, tuple]]) -> None:
    get = acc.get
    for key, (num, den, n, vsum, vn) in changes:
        cur = get(key)
        if cur is None:
            acc[key] = [num, den, n, vsum, vn]
        else:
            cur[0] += num
            cur[1] += den
            cur[2] += n
            cur[3] += vsum
            cur[4] += vn


def add_to_histogram(acc: dict[Key, list], o: Obs, sign: int = 1) -> None:
    """A flow observation's value in its indicator's histogram (distribution.py), at every level."""
    b, hb, row = bucket_of(o.at), str(bin_of(o.value)), (0, 0, sign, sign * round(o.value * MICRO), sign)
    cat = (o.category or "")[:48]
    _accumulate(acc, [change for p in levels_of(o.place or "")
                      for change in (((o.kpi, "flow", HIST, p, b, hb, ""), row),
                                     ((o.kpi, "flow", HIST_BY_CATEGORY, p, b, hb, cat), row))])


def nonzero(acc: dict[Key, list], *, ordered: bool = True) -> list[tuple]:
    """The changed keys as rows; sorted unless `ordered` is False (the order is a fixed lock order for
    concurrent writers on PostgreSQL; SQLite's one writer needs none)."""
    items = sorted(acc.items()) if ordered else acc.items()
    return [(*k, *v) for k, v in items if any(v)]


SQLITE_UPSERT = sqlite_json_insert(
    "kpi_rollups", COLUMNS, "ON CONFLICT (kpi, mode, dim, place, bucket, dimval, category) DO UPDATE SET "
    "num = num + excluded.num, den = den + excluded.den, n = n + excluded.n, vsum = vsum + excluded.vsum, "
    "vn = vn + excluded.vn")
SQLITE_ADD_TOP_PLACES = sqlite_json_insert("kpi_rollup_top_places", ("place",), "ON CONFLICT (place) DO NOTHING")


async def apply(session: AsyncSession, acc: dict[Key, list]) -> int:
    return await write_rows(session, nonzero(acc))


async def write_rows(session: AsyncSession, rows: list[tuple]) -> int:
    """Add these rows (from `nonzero`) to the rollup."""
    if not rows:
        return 0
    conn = await session.connection()
    tops = top_places(rows)
    if session.bind.dialect.name == "sqlite":
        await conn.exec_driver_sql(SQLITE_UPSERT, (json_rows(rows),))
        if tops:
            await conn.exec_driver_sql(SQLITE_ADD_TOP_PLACES, (json_rows([[p] for p in tops]),))
    else:
        if tops:
            await conn.execute(pg_insert(RollupTopPlace.__table__).on_conflict_do_nothing(),
                               [{"place": p} for p in tops])
        t = Rollup.__table__
        stmt = pg_insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["kpi", "mode", "dim", "place", "bucket", "dimval", "category"],
            set_={c: t.c[c] + stmt.excluded[c] for c in ("num", "den", "n", "vsum", "vn")})
        for i in range(0, len(rows), 1000):
            await conn.execute(stmt, [dict(zip(COLUMNS, r)) for r in rows[i:i + 1000]])
    return len(rows)


# ------------------------------------------------------------------------------------------------ reading
def dim_for(channel: str | None, group: str | None, category: str | None = None) -> tuple[str, str] | None:
    """Which rollup slice answers these filters; None (read the observations instead) when both a channel and a
    group are set, or either with a category (channel and group slices add up the categories of most inputs)."""
    if (channel and group) or ((channel or group) and category):
        return None
    if channel:
        return ("channel", channel)
    if group:
        return ("group", group)
    return ("", "")


def full_months(first: date, after: date) -> tuple[int, int] | None:
    """The first and last whole Asia/Shanghai months inside [first, after), if any, as yyyymm."""
    lo = first if first.day == 1 else (first.replace(day=1) + timedelta(days=32)).replace(day=1)
    hi = after.replace(day=1)                      # the month `after` falls in is not whole
    if lo >= hi:
        return None
    last = (hi - timedelta(days=1)).replace(day=1)
    return bucket_of_day(lo), bucket_of_day(last)


def obs_scope_conds(col, scope: str) -> list:
    """The scope on the observations. A district or street holds most places, so its range on the place index
    would read the observations of all time: compare a prefix instead, which keeps the planner on the time
    index (a community or grid is narrow enough for the place index)."""
    if scope == "all":
        return []
    if len(scope) <= 9:
        return [func.substr(col, 1, len(scope)) == scope]
    return [col >= scope, col < scope + ":"]


async def flow_sums(session: AsyncSession, kpis: list[str], lo: int, hi: int, dim: tuple[str, str],
                    scope: str, category: str | None) -> dict[tuple[str, str | None], list]:
    """Σnum, Σden, n, Σvalue (millionths), values per (kpi, category) over months lo..hi."""
    r = Rollup
    conds = [r.kpi.in_(kpis), r.mode == "flow", r.dim == dim[0], at_scope(scope),
             r.bucket >= lo, r.bucket <= hi, r.dimval == dim[1]]
    if category:
        conds.append(r.category == category)
    rows = await session.execute(select(r.kpi, r.category, func.sum(r.num), func.sum(r.den), func.sum(r.n),
                                        func.sum(r.vsum), func.sum(r.vn)).where(*conds).group_by(r.kpi, r.category))
    return {(k, c or None): [float(a or 0), float(b or 0), int(n or 0), int(vs or 0), int(vn or 0)]
            for k, c, a, b, n, vs, vn in rows}


async def hist_sums(session: AsyncSession, kpis: list[str], lo: int, hi: int, scope: str,
                    categories: list[str] | None = None) -> dict[tuple[str, str | None], dict[int, list[int]]]:
    """The value histograms {bin: [count, Σ millionths]} over months lo..hi: of every category together, keyed
    (kpi, None), or of each of `categories`, keyed (kpi, category)."""
    r = Rollup
    conds = [r.kpi.in_(kpis), r.mode == "flow", at_scope(scope), r.bucket >= lo, r.bucket <= hi]
    if categories is None:
        conds.append(r.dim == HIST)
    else:
        conds += [r.dim == HIST_BY_CATEGORY, r.category.in_(categories)]
    rows = await session.execute(select(r.kpi, r.category, r.dimval, func.sum(r.n), func.sum(r.vsum))
                                 .where(*conds).group_by(r.kpi, r.category, r.dimval))
    out: dict[tuple[str, str | None], dict[int, list[int]]] = {}
    for k, c, b, n, vs in rows:
        if n:
            out.setdefault((k, c if categories is not None else None), {})[int(b)] = [int(n), int(vs or 0)]
    return out


async def stock_sums(session: AsyncSession, kpis: list[str], before: int, dim: tuple[str, str], scope: str,
                     category: str | None) -> dict[tuple, list]:
    """The stock (Σnum, Σden, n) as of the start of month `before`, per (kpi, category)."""
    r = Rollup
    conds = [r.kpi.in_(kpis), r.mode == "stock", r.dim == dim[0], at_scope(scope),
             r.bucket < before, r.dimval == dim[1]]
    if category:
        conds.append(r.category == category)
    rows = await session.execute(select(r.kpi, r.category, func.sum(r.num), func.sum(r.den), func.sum(r.n))
                                 .where(*conds).group_by(r.kpi, r.category))
    return {(k, c or None): [float(a or 0), float(b or 0), int(n or 0)] for k, c, a, b, n in rows}


async def rebuild(session: AsyncSession) -> None:
    """Empty the rollup (the caller then re-adds every entity's observations through `apply`)."""
    await session.execute(text("DELETE FROM kpi_rollups"))
    await session.execute(text("DELETE FROM kpi_rollup_top_places"))

