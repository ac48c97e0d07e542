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

from svc_matching.engine.assignment import edge_arrays, feasible_edges, greedy, solve_batch, total_cost
from svc_matching.engine.costs import explain, pair_cost, slot_cost, top_k, unassigned_cost
from svc_matching.engine.filters import FILTER_TEXT, FILTERS, check, haversine_m, schedule_overlaps
from svc_matching.engine.model import BatchResult, Candidate, Need, Provider, Slot, Weights

__all__ = ["FILTERS", "FILTER_TEXT", "BatchResult", "Candidate", "Need", "Provider", "Slot", "Weights", "check",
           "edge_arrays", "explain", "feasible_edges", "greedy", "haversine_m", "pair_cost", "schedule_overlaps",
           "slot_cost", "solve_batch", "top_k", "total_cost", "unassigned_cost"]
