from svc_matching.engine.core import (  # noqa: F401
    FILTER_TEXT, FILTERS, BatchResult, Candidate, Need, Provider, Slot, Weights, check, greedy, haversine_m,
    schedule_overlaps, solve_batch, top_k, total_cost,
)
