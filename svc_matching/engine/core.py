"""The matching engine: pure functions over plain data, no database, deterministic for the same input (needs and
providers are sorted by id first, so the input order does not matter either).

* hard filters (`check`): category / skill, eligibility (age, special-group tags), schedule overlap, remaining
  capacity, distance within the provider's service area (place codes or radius) or the 15-minute circle;
* a cost in integer points (`pair_cost`, `slot_cost`, `unassigned_cost`) combining distance, provider load,
  past ratings and the need's priority, the weights coming from configuration (`Weights`);
* batch mode (`solve_batch`): the assignment of many needs to providers with capacities that minimises the
  total cost of the whole batch, solved exactly as a min-cost flow by OR-Tools' SimpleMinCostFlow (SciPy's
  HiGHS `milp` on the same network gave the same optimum but was ~100× slower at 10,000 × 2,000).
  Every feasible pair is an arc. Keeping only each need's k cheapest providers is not exact: with capacity
  short, the benchmark's optimum sends one need to the provider 88 places down its own cost-ranked list.
  Certifying a pruned solve needs the flow's duals, which SimpleMinCostFlow does not expose; recomputing them
  (shortest paths on the residual network) and re-solving until no pruned arc prices in took 3–5 rounds and
  cost more than the full solve, so it was dropped;
* single-need mode (`top_k`): the k cheapest eligible providers, each with the reasons for its score;
* `greedy` is the baseline the benchmark compares against.

Costs are integers so totals compare exactly between solvers. Provider load is convex: the k-th extra piece of
work for a provider costs `load * (active + k) / capacity`, so work spreads instead of piling on a few.
Leaving a need unassigned costs `unassigned + priority * priority_score`, larger than any assignment, so the
batch serves as many needs as it can and, when capacity is short, the higher-priority needs first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np


@dataclass(frozen=True)
class Weights:
    """Cost weights (points); configuration, see `MatchingSettings`."""

    distance_per_km: float = 100.0      # points per km between need and provider
    load: float = 100.0                 # points when the provider would be at full capacity
    rating: float = 100.0               # points for the worst past rating (1 of 5), 0 for 5 of 5
    neutral_rating: float = 3.5         # assumed rating for a provider nobody has rated yet
    priority: float = 1000.0            # extra penalty per priority step for leaving a need unassigned
    unassigned: float = 100000.0        # base penalty for leaving a need unassigned
    walk_circle_m: float = 1000.0       # the 15-minute circle (15 min walk ≈ 1 km) when no service area is set
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class Slot:
    """A weekly opening: weekday 0 = Monday, minutes since local midnight [start, end)."""

    weekday: int
    start_min: int
    end_min: int


@dataclass(frozen=True)
class Need:
    id: str
    category: str
    lat: float
    lon: float
    priority: int = 1                       # 1 normal … higher is more urgent (special groups raise it)
    window_start: datetime | None = None
    window_end: datetime | None = None
    age: int | None = None
    tags: frozenset[str] = frozenset()
    place_code: str | None = None


@dataclass(frozen=True)
class Provider:
    id: str
    categories: frozenset[str]
    lat: float
    lon: float
    capacity: int                           # total concurrent / per-period capacity
    active: int = 0                         # work already held
    radius_m: float | None = None           # service area radius; None → the 15-minute circle
    area_codes: tuple[str, ...] = ()        # service area as place codes (a need inside any of them qualifies)
    rating: float | None = None
    min_age: int | None = None
    max_age: int | None = None
    eligibility: frozenset[str] = frozenset()   # any-of special-group tags; empty = everyone
    schedule: tuple[Slot, ...] = ()             # empty = no fixed hours

    @property
    def remaining(self) -> int:
        return max(0, self.capacity - self.active)


# Reasons a provider is filtered out, in the order the filters run.
FILTERS = ("category", "capacity", "eligibility_age", "eligibility_tags", "schedule", "distance")
FILTER_TEXT = {
    "category": ("服务类别或技能不符", "Category / skill does not match"),
    "capacity": ("剩余服务能力不足", "No remaining capacity"),
    "eligibility_age": ("年龄不符合服务对象条件", "Age outside the eligible range"),
    "eligibility_tags": ("不属于该服务的服务对象群体", "Not in an eligible group"),
    "schedule": ("服务时间与需求时段不重叠", "Schedule does not overlap the time window"),
    "distance": ("超出服务范围或15分钟生活圈", "Outside the service area / 15-minute circle"),
}


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


def schedule_overlaps(schedule: tuple[Slot, ...], start: datetime | None, end: datetime | None,
                      tz: str = "Asia/Shanghai") -> bool:
    """True when some weekly slot intersects [start, end) in local time (no schedule or no window: True)."""
    if not schedule or start is None or end is None:
        return True
    zone = ZoneInfo(tz)
    s, e = start.astimezone(zone), end.astimezone(zone)
    day = datetime(s.year, s.month, s.day, tzinfo=zone)
    last = datetime(e.year, e.month, e.day, tzinfo=zone)
    steps = 0
    while day <= last and steps < 9:
        for slot in schedule:
            if slot.weekday != day.weekday():
                continue
            a = day + timedelta(minutes=slot.start_min)
            b = day + timedelta(minutes=slot.end_min)
            if a < e and s < b:
                return True
        day = (day + timedelta(days=1)).replace(tzinfo=zone)
        steps += 1
    return False


def distance_ok(need: Need, p: Provider, w: Weights) -> tuple[bool, float]:
    d = haversine_m(need.lat, need.lon, p.lat, p.lon)
    if p.area_codes and need.place_code and any(need.place_code.startswith(c) for c in p.area_codes):
        return True, d
    radius = p.radius_m if p.radius_m is not None else w.walk_circle_m
    return d <= radius, d


def check(need: Need, p: Provider, w: Weights) -> tuple[str | None, float]:
    """(first failing filter or None, distance in metres)."""
    if need.category not in p.categories:
        return "category", math.nan
    if p.remaining <= 0:
        return "capacity", math.nan
    if p.min_age is not None or p.max_age is not None:
        if need.age is None or (p.min_age is not None and need.age < p.min_age) or \
                (p.max_age is not None and need.age > p.max_age):
            return "eligibility_age", math.nan
    if p.eligibility and not (p.eligibility & need.tags):
        return "eligibility_tags", math.nan
    if not schedule_overlaps(p.schedule, need.window_start, need.window_end, w.timezone):
        return "schedule", math.nan
    ok, d = distance_ok(need, p, w)
    return (None if ok else "distance"), d


def distance_cost(d_m: float, w: Weights) -> int:
    return int(round(w.distance_per_km * d_m / 1000.0))


def rating_cost(p: Provider, w: Weights) -> int:
    r = p.rating if p.rating is not None else w.neutral_rating
    r = min(5.0, max(1.0, r))
    return int(round(w.rating * (5.0 - r) / 4.0))


def slot_cost(p: Provider, k: int, w: Weights) -> int:
    """Cost of the k-th (0-based) extra piece of work given to `p` in this run: convex in k."""
    return int(round(w.load * (p.active + k + 1) / max(1, p.capacity)))


def pair_cost(d_m: float, p: Provider, w: Weights) -> int:
    """Cost of the need–provider pair without the load term."""
    return distance_cost(d_m, w) + rating_cost(p, w)


def unassigned_cost(need: Need, w: Weights) -> int:
    return int(round(w.unassigned + w.priority * need.priority))


@dataclass
class Candidate:
    provider_id: str
    cost: int
    distance_m: float
    reasons: list[dict] = field(default_factory=list)


def explain(need: Need, p: Provider, d: float, w: Weights) -> Candidate:
    dc, rc, lc = distance_cost(d, w), rating_cost(p, w), slot_cost(p, 0, w)
    rating = p.rating if p.rating is not None else None
    reasons = [
        {"factor": "category", "cost": 0, "zh": f"可提供“{need.category}”类服务", "en": f"Offers {need.category}"},
        {"factor": "distance", "cost": dc, "value": round(d),
         "zh": f"距离约 {round(d)} 米", "en": f"About {round(d)} m away"},
        {"factor": "load", "cost": lc, "value": p.active, "capacity": p.capacity,
         "zh": f"当前承接 {p.active}/{p.capacity}", "en": f"Currently holds {p.active} of {p.capacity}"},
        {"factor": "rating", "cost": rc, "value": rating,
         "zh": f"历史评分 {rating:.1f}" if rating is not None else "暂无评分（按中性分计）",
         "en": f"Past rating {rating:.1f}" if rating is not None else "Not rated yet (neutral)"},
        {"factor": "priority", "cost": 0, "value": need.priority,
         "zh": f"需求优先级 {need.priority}（批量匹配时优先保障）",
         "en": f"Need priority {need.priority} (served first in batch matching)"},
    ]
    return Candidate(p.id, dc + rc + lc, d, reasons)


def top_k(need: Need, providers: list[Provider], w: Weights, k: int = 5) -> tuple[list[Candidate], dict[str, int]]:
    """The k cheapest eligible providers (ties by provider id) and how many were excluded by each filter."""
    excluded: dict[str, int] = {}
    out = []
    for p in sorted(providers, key=lambda p: p.id):
        reason, d = check(need, p, w)
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        out.append(explain(need, p, d, w))
    out.sort(key=lambda c: (c.cost, c.provider_id))
    return out[:k], excluded


@dataclass
class BatchResult:
    assignments: dict[str, str]          # need id -> provider id
    unassigned: list[str]
    total_cost: int
    pair_costs: dict[str, int] = field(default_factory=dict)


def _haversine_matrix(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    r = 6371008.8
    p1, p2 = np.radians(lat1)[:, None], np.radians(lat2)[None, :]
    dp = p2 - p1
    dl = np.radians(lon2)[None, :] - np.radians(lon1)[:, None]
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * r * np.arcsin(np.minimum(1.0, np.sqrt(a)))


def _bitsets(sets: list[frozenset[str]], bit: dict[str, int], words: int) -> np.ndarray:
    """One row of `words` uint64 words per set, bit k set when the set holds the tag numbered k."""
    out = np.zeros((len(sets), words), np.uint64)
    if not bit:
        return out
    masks = [sum(1 << bit[t] for t in s if t in bit) for s in sets]
    for word in range(words):
        out[:, word] = np.array([(m >> (64 * word)) & 0xFFFFFFFFFFFFFFFF for m in masks], np.uint64)
    return out


def _area_match(place: np.ndarray, has_place: np.ndarray, codes: tuple[str, ...]) -> np.ndarray:
    """Needs whose place code lies inside any of `codes` (prefix match, as in `distance_ok`)."""
    hit = np.zeros(len(place), bool)
    for code in codes:
        hit |= np.char.startswith(place, code)
    return hit & has_place


def edge_arrays(needs: list[Need], providers: list[Provider], w: Weights):
    """Arrays (need index, provider index, pair cost) of every pair passing the hard filters, sorted by need
    then provider. Same rules as `check`, evaluated as NumPy matrices per category (a need has one category,
    so only needs × providers of that category are ever compared)."""
    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not needs or not providers:
        return empty
    # per-provider columns
    p_lat = np.array([p.lat for p in providers], float)
    p_lon = np.array([p.lon for p in providers], float)
    radius = np.array([p.radius_m if p.radius_m is not None else w.walk_circle_m for p in providers], float)
    min_age = np.array([p.min_age if p.min_age is not None else -np.inf for p in providers], float)
    max_age = np.array([p.max_age if p.max_age is not None else np.inf for p in providers], float)
    age_limited = np.array([p.min_age is not None or p.max_age is not None for p in providers], bool)
    rating = np.array([rating_cost(p, w) for p in providers], np.int64)
    # per-need columns; an unknown age is NaN, which fails every comparison (as `check` refuses it)
    n_lat = np.array([n.lat for n in needs], float)
    n_lon = np.array([n.lon for n in needs], float)
    n_age = np.array([n.age if n.age is not None else np.nan for n in needs], float)
    place = np.array([n.place_code or "" for n in needs], dtype=str)
    has_place = np.array([bool(n.place_code) for n in needs], bool)
    # eligibility as bit sets over the tags some provider asks for (any-of = non-zero AND)
    elig_tags = sorted({t for p in providers for t in p.eligibility})
    bit = {t: k for k, t in enumerate(elig_tags)}
    words = max(1, (len(elig_tags) + 63) // 64)
    p_elig = _bitsets([p.eligibility for p in providers], bit, words)
    n_tags = _bitsets([n.tags for n in needs], bit, words)
    p_restricted = np.array([bool(p.eligibility) for p in providers], bool)
    # schedules and time windows as small integer ids, so each distinct (schedule, window) is checked once
    sched_id: dict[tuple[Slot, ...], int] = {}
    p_sched = np.array([sched_id.setdefault(p.schedule, len(sched_id)) if p.schedule else -1 for p in providers])
    window_id: dict[tuple[datetime, datetime], int] = {}
    n_window = np.array([window_id.setdefault((n.window_start, n.window_end), len(window_id))
                         if n.window_start is not None and n.window_end is not None else -1 for n in needs])
    schedules, windows = list(sched_id), list(window_id)

    by_cat_p: dict[str, list[int]] = {}
    for j, p in enumerate(providers):
        if p.remaining > 0:
            for c in p.categories:
                by_cat_p.setdefault(c, []).append(j)
    by_cat_n: dict[str, list[int]] = {}
    for i, n in enumerate(needs):
        by_cat_n.setdefault(n.category, []).append(i)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for cat in sorted(by_cat_n):
        if cat not in by_cat_p:
            continue
        ni, pj = np.array(by_cat_n[cat], np.int64), np.array(by_cat_p[cat], np.int64)
        d = _haversine_matrix(n_lat[ni], n_lon[ni], p_lat[pj], p_lon[pj])
        ok = d <= radius[pj][None, :]
        for col in np.flatnonzero([bool(providers[j].area_codes) for j in pj]).tolist():
            ok[:, col] |= _area_match(place[ni], has_place[ni], providers[pj[col]].area_codes)
        if age_limited[pj].any():
            age = n_age[ni][:, None]
            ok &= ~age_limited[pj][None, :] | ((age >= min_age[pj][None, :]) & (age <= max_age[pj][None, :]))
        if p_restricted[pj].any():
            shared = np.zeros(ok.shape, bool)
            for word in range(words):
                shared |= (n_tags[ni, word][:, None] & p_elig[pj, word][None, :]) != 0
            ok &= ~p_restricted[pj][None, :] | shared
        rows, cols = np.nonzero(ok)
        sched, window = p_sched[pj][cols], n_window[ni][rows]
        timed = np.flatnonzero((sched >= 0) & (window >= 0))
        if len(timed):
            keys, inverse = np.unique(sched[timed] * len(windows) + window[timed], return_inverse=True)
            overlap = np.array([schedule_overlaps(schedules[k // len(windows)], *windows[k % len(windows)],
                                                  w.timezone) for k in keys.tolist()], bool)
            keep = np.ones(len(rows), bool)
            keep[timed] = overlap[inverse]
            rows, cols = rows[keep], cols[keep]
        cost = np.rint(w.distance_per_km * d[rows, cols] / 1000.0).astype(np.int64) + rating[pj[cols]]
        parts.append((ni[rows], pj[cols], cost))
    if not parts:
        return empty
    gi, gj, cost = (np.concatenate(x) for x in zip(*parts))
    # each part is already ordered by (need, provider) and a need lies in one part: a stable sort by need suffices
    order = np.argsort(gi, kind="stable")
    return gi[order], gj[order], cost[order]


def feasible_edges(needs: list[Need], providers: list[Provider], w: Weights) -> list[tuple[int, int, int]]:
    """(need index, provider index, pair cost) for every pair passing the hard filters."""
    gi, gj, cost = edge_arrays(needs, providers, w)
    return list(zip(gi.tolist(), gj.tolist(), cost.tolist()))


def total_cost(needs: list[Need], providers: list[Provider], assignment: dict[str, str], w: Weights,
               edges: list[tuple[int, int, int]] | None = None) -> int:
    """The objective for any assignment, from the same edge costs the solver uses (tests, greedy, benchmark)."""
    needs = sorted(needs, key=lambda n: n.id)
    providers = sorted(providers, key=lambda p: p.id)
    edges = feasible_edges(needs, providers, w) if edges is None else edges
    pidx = {p.id: j for j, p in enumerate(providers)}
    cost = {(i, j): c for i, j, c in edges}
    used: dict[int, int] = {}
    total = 0
    for i, n in enumerate(needs):
        pid = assignment.get(n.id)
        if pid is None:
            total += unassigned_cost(n, w)
            continue
        j = pidx[pid]
        if (i, j) not in cost:
            raise ValueError(f"infeasible pair {n.id}->{pid}")
        k = used.get(j, 0)
        if k >= providers[j].remaining:
            raise ValueError(f"capacity exceeded for {pid}")
        used[j] = k + 1
        total += cost[(i, j)] + slot_cost(providers[j], k, w)
    return total


def solve_batch(needs: list[Need], providers: list[Provider], w: Weights) -> BatchResult:
    """Exact minimum-total-cost assignment of `needs` to `providers` within remaining capacities.

    Min-cost flow (OR-Tools SimpleMinCostFlow): source → need (1) → provider (1 per feasible pair, pair cost)
    → sink through one unit arc per remaining slot (convex load cost); need → sink directly is "unassigned".
    """
    from ortools.graph.python import min_cost_flow

    needs = sorted(needs, key=lambda n: n.id)
    providers = sorted(providers, key=lambda p: p.id)
    n_needs, n_prov = len(needs), len(providers)
    if not n_needs:
        return BatchResult({}, [], 0)
    ei, ej, ec = edge_arrays(needs, providers, w)
    # one unit arc per remaining slot, but never more slots than the provider has feasible needs
    n_slots = np.minimum(np.array([p.remaining for p in providers], np.int64), np.bincount(ej, minlength=n_prov))
    slot_prov = np.repeat(np.arange(n_prov), n_slots)
    slot_k = np.arange(len(slot_prov)) - np.repeat(np.cumsum(n_slots) - n_slots, n_slots)
    active = np.array([p.active for p in providers], float)
    capacity = np.array([max(1, p.capacity) for p in providers], float)
    # the same arithmetic as `slot_cost` / `unassigned_cost`, element-wise (np.rint rounds half to even like round)
    slot_c = np.rint(w.load * (active[slot_prov] + slot_k + 1) / capacity[slot_prov]).astype(np.int64)
    priority = np.array([n.priority for n in needs], float)
    unassigned_c = np.rint(w.unassigned + w.priority * priority).astype(np.int64)
    source, sink = 0, 1 + n_needs + n_prov
    idx = np.arange(n_needs)
    tails = np.concatenate([np.zeros(n_needs, np.int64), 1 + idx, 1 + ei, 1 + n_needs + slot_prov])
    heads = np.concatenate([1 + idx, np.full(n_needs, sink), 1 + n_needs + ej, np.full(len(slot_prov), sink)])
    costs = np.concatenate([np.zeros(n_needs, np.int64), unassigned_c, ec, slot_c])
    smcf = min_cost_flow.SimpleMinCostFlow()
    smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, np.ones(len(tails), np.int64), costs)
    smcf.set_node_supply(source, n_needs)
    smcf.set_node_supply(sink, -n_needs)
    status = smcf.solve()
    if status != smcf.OPTIMAL:  # pragma: no cover - the all-unassigned flow is always feasible
        raise RuntimeError(f"min-cost flow failed: {status}")
    first = 2 * n_needs
    flows = smcf.flows(np.arange(first, first + len(ei))) if len(ei) else np.zeros(0, np.int64)
    chosen = np.nonzero(flows)[0]
    assignments: dict[str, str] = {}
    pair_costs: dict[str, int] = {}
    for i, j, c in zip(ei[chosen].tolist(), ej[chosen].tolist(), ec[chosen].tolist()):
        assignments[needs[i].id] = providers[j].id
        pair_costs[needs[i].id] = c
    unassigned = [n.id for n in needs if n.id not in assignments]
    return BatchResult(assignments, unassigned, int(smcf.optimal_cost()), pair_costs)


def greedy(needs: list[Need], providers: list[Provider], w: Weights) -> dict[str, str]:
    """Baseline: most urgent needs first, each to its currently cheapest feasible provider."""
    needs = sorted(needs, key=lambda n: n.id)
    providers = sorted(providers, key=lambda p: p.id)
    options: dict[int, list[tuple[int, int]]] = {}
    for i, j, c in feasible_edges(needs, providers, w):
        options.setdefault(i, []).append((j, c))
    used: dict[int, int] = {}
    out: dict[str, str] = {}
    for i in sorted(range(len(needs)), key=lambda i: (-needs[i].priority, needs[i].id)):
        best = None
        for j, c in options.get(i, ()):
            k = used.get(j, 0)
            if k >= providers[j].remaining:
                continue
            cost = c + slot_cost(providers[j], k, w)
            if best is None or cost < best[0]:
                best = (cost, j)
        if best:
            out[needs[i].id] = providers[best[1]].id
            used[best[1]] = used.get(best[1], 0) + 1
    return out
