"""Costs in integer points (distance, load, rating, priority) and the single-need ranking (`top_k`, `explain`)."""
from __future__ import annotations



from svc_matching.engine.filters import check
from svc_matching.engine.model import Candidate, Need, Provider, Weights


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
