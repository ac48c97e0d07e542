"""Batch mode: every feasible need–provider arc (`edge_arrays`) and the exact min-cost-flow assignment
(`solve_batch`), with `greedy` as the baseline and `total_cost` to compare them."""
from __future__ import annotations

from datetime import datetime

import numpy as np

from common.geo import distance_matrix_m
from svc_matching.engine.costs import rating_cost, slot_cost, unassigned_cost
from svc_matching.engine.filters import schedule_overlaps
from svc_matching.engine.model import BatchResult, Need, Provider, Slot, Weights


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
        d = distance_matrix_m(n_lat[ni], n_lon[ni], p_lat[pj], p_lon[pj])
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
