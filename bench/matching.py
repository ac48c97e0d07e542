"""Benchmark: batch-match 10,000 needs to 2,000 providers with capacities (svc_matching's engine).

    .venv/bin/python -m bench.matching [needs] [providers] [seed] [--repeat 5]

Reports the engine's time (median of `--repeat` runs, wall clock and CPU — the machine is shared, so the CPU time
is the steadier figure), its total cost, the total cost of an independent exact solver
(`scipy.sparse.csgraph.min_weight_full_bipartite_matching`, LAPJVsp, on the capacity-expanded graph; must be
equal), and a greedy baseline. Never part of `make test`; no wall-clock assertion anywhere. Exit status 1 when
the costs differ or a repeat gives a different assignment.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from svc_matching.engine import Need, Provider, Weights, greedy, solve_batch, total_cost
from svc_matching.engine import edge_arrays, slot_cost, unassigned_cost

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
    ei, ej, ec = edge_arrays(needs, providers, w)
    remaining = np.array([p.remaining for p in providers], np.int64)
    slot_base = np.cumsum(remaining) - remaining
    n_slots = int(remaining.sum())
    # every feasible pair × every remaining slot of its provider; +1: explicit zeros would vanish from a sparse matrix
    rows = np.repeat(ei, remaining[ej])
    pj = np.repeat(ej, remaining[ej])
    k = np.arange(len(rows)) - np.repeat(np.cumsum(remaining[ej]) - remaining[ej], remaining[ej])
    width = int(remaining.max(initial=0))
    slot = np.array([[slot_cost(p, s, w) for s in range(width)] for p in providers], np.int64)
    slot = slot.reshape(len(providers), width)
    vals = np.repeat(ec, remaining[ej]) + slot[pj, k] + 1
    cols = slot_base[pj] + k
    rows = np.concatenate([rows, np.arange(len(needs))])
    cols = np.concatenate([cols, n_slots + np.arange(len(needs))])
    vals = np.concatenate([vals, [unassigned_cost(n, w) + 1 for n in needs]])
    g = sparse.csr_array((vals.astype(float), (rows, cols)), shape=(len(needs), n_slots + len(needs)))
    r, c = min_weight_full_bipartite_matching(g)
    return int(round(g[r, c].sum())) - len(needs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("needs", nargs="?", type=int, default=10_000)
    parser.add_argument("providers", nargs="?", type=int, default=2_000)
    parser.add_argument("seed", nargs="?", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5, help="engine runs; the median time is reported")
    args = parser.parse_args()
    w = Weights()
    needs, providers = make_case(args.needs, args.providers, args.seed)
    cap = sum(p.remaining for p in providers)
    walls, cpus, results = [], [], []
    for run in range(max(1, args.repeat)):
        # later runs get the input in another order: the assignment must not change (determinism)
        run_needs, run_providers = list(needs), list(providers)
        if run:
            random.Random(run).shuffle(run_needs)
            random.Random(-run).shuffle(run_providers)
        t0, c0 = time.perf_counter(), time.process_time()
        results.append(solve_batch(run_needs, run_providers, w))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    res = results[0]
    stable = all(r.assignments == res.assignments and r.total_cost == res.total_cost for r in results)
    t0 = time.perf_counter()
    exact = exact_by_matching(needs, providers, w)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = greedy(needs, providers, w)
    g_cost = total_cost(needs, providers, g, w)
    t_greedy = time.perf_counter() - t0
    print(f"needs {args.needs}, providers {args.providers}, remaining capacity {cap}, seed {args.seed}")
    print(f"engine (OR-Tools min-cost flow):    median {statistics.median(walls):.2f} s wall "
          f"(min {min(walls):.2f}, max {max(walls):.2f}, {len(walls)} runs), "
          f"median {statistics.median(cpus):.2f} s CPU")
    print(f"                                    cost {res.total_cost}, assigned {len(res.assignments)}, "
          f"unassigned {len(res.unassigned)}, same assignment every run (shuffled input): {'YES' if stable else 'NO'}")
    print(f"independent exact (LAPJVsp):        {t_exact:.2f} s, cost {exact}, "
          f"{'EQUAL' if exact == res.total_cost else 'DIFFERENT'}")
    print(f"greedy baseline:                    {t_greedy:.2f} s, cost {g_cost} "
          f"(+{(g_cost - res.total_cost) / max(1, res.total_cost):.2%}), assigned {len(g)}")
    if exact != res.total_cost or not stable:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
