"""Benchmark: batch-match 10,000 needs to 2,000 providers with capacities (svc_matching's engine).

Reports the engine's time and total cost, the total cost of an independent exact solver
(`scipy.sparse.csgraph.min_weight_full_bipartite_matching`, LAPJVsp, on the capacity-expanded graph; must be
equal), and a greedy baseline. Run: `.venv/bin/python -m bench.matching [needs] [providers] [seed]`.
Never part of `make test`; no wall-clock assertion anywhere.
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from svc_matching.engine import Need, Provider, Weights, greedy, solve_batch, total_cost
from svc_matching.engine.core import feasible_edges, slot_cost, unassigned_cost

CATEGORIES = ["elderly_care", "childcare", "life_service", "emergency", "government", "grid_event", "counselling",
              "employment", "health", "disability", "education", "legal", "culture", "housing", "environment"]
TAGS = ["elderly", "disabled", "dibao", "infant", "left_behind_child"]
LAT0, LON0 = 39.90, 116.43      # a street of about 4 km × 4 km
SPAN = 0.036


def make_case(n_needs: int, n_providers: int, seed: int):
    rnd = random.Random(seed)
    providers = [Provider(
        id=f"p{j:05d}", categories=frozenset(rnd.sample(CATEGORIES, rnd.randint(1, 3))),
        lat=LAT0 + rnd.random() * SPAN, lon=LON0 + rnd.random() * SPAN, capacity=rnd.randint(3, 8),
        active=rnd.randint(0, 2), radius_m=rnd.choice([None, None, 1500.0, 2500.0]),
        rating=rnd.choice([None, 3.0, 4.0, 4.5, 5.0]),
        min_age=60 if rnd.random() < 0.1 else None,
        eligibility=frozenset([rnd.choice(TAGS)]) if rnd.random() < 0.1 else frozenset())
        for j in range(n_providers)]
    needs = [Need(
        id=f"n{i:06d}", category=rnd.choice(CATEGORIES), lat=LAT0 + rnd.random() * SPAN,
        lon=LON0 + rnd.random() * SPAN, priority=rnd.randint(1, 4), age=rnd.randint(1, 95),
        tags=frozenset(rnd.sample(TAGS, rnd.randint(0, 2))))
        for i in range(n_needs)]
    return needs, providers


def exact_by_matching(needs, providers, w: Weights) -> int:
    """Independent exact optimum: capacity-expanded bipartite graph (slot k of provider j costs pair + slot(k)),
    one private 'unassigned' column per need; minimum-weight full matching of the needs."""
    needs = sorted(needs, key=lambda n: n.id)
    providers = sorted(providers, key=lambda p: p.id)
    edges = feasible_edges(needs, providers, w)
    slot_base, n_slots = {}, 0
    for j, p in enumerate(providers):
        slot_base[j] = n_slots
        n_slots += p.remaining
    rows, cols, vals = [], [], []
    for i, j, pc in edges:
        p = providers[j]
        for k in range(p.remaining):
            rows.append(i)
            cols.append(slot_base[j] + k)
            vals.append(pc + slot_cost(p, k, w) + 1)     # +1: explicit zeros would vanish from a sparse matrix
    for i, n in enumerate(needs):
        rows.append(i)
        cols.append(n_slots + i)
        vals.append(unassigned_cost(n, w) + 1)
    g = sparse.csr_array((np.array(vals, dtype=float), (rows, cols)), shape=(len(needs), n_slots + len(needs)))
    r, c = min_weight_full_bipartite_matching(g)
    return int(round(g[r, c].sum())) - len(needs)


def main() -> None:
    n_needs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    n_providers = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    w = Weights()
    needs, providers = make_case(n_needs, n_providers, seed)
    cap = sum(p.remaining for p in providers)
    t0 = time.perf_counter()
    res = solve_batch(needs, providers, w)
    t_engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = exact_by_matching(needs, providers, w)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = greedy(needs, providers, w)
    g_cost = total_cost(needs, providers, g, w)
    t_greedy = time.perf_counter() - t0
    print(f"needs {n_needs}, providers {n_providers}, remaining capacity {cap}, seed {seed}")
    print(f"engine (OR-Tools min-cost flow):    {t_engine:.2f} s, cost {res.total_cost}, "
          f"assigned {len(res.assignments)}, unassigned {len(res.unassigned)}")
    print(f"independent exact (LAPJVsp):        {t_exact:.2f} s, cost {exact}, "
          f"{'EQUAL' if exact == res.total_cost else 'DIFFERENT'}")
    print(f"greedy baseline:                    {t_greedy:.2f} s, cost {g_cost} "
          f"(+{(g_cost - res.total_cost) / max(1, res.total_cost):.2%}), assigned {len(g)}")
    if exact != res.total_cost:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
