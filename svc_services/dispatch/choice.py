"""What a dispatch records: a kept recommendation picked by rank, or a manual choice (see `dispatch.service`)."""
from __future__ import annotations

from typing import Any

from common.errors import invalid
from svc_services.requests.models import ServiceRequest
from svc_services.requests.schemas import Assignee


def dispatch_choice(req: ServiceRequest, assignee: Assignee | None, candidate_rank: int | None,
                    matching_now: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(assignee, timeline data) of a dispatch: a kept recommendation by rank, or a manual choice.

    `matching_now` is what svc_matching's state was just before a manual dispatch (`dispatch.service.
    matching_probe`): when it is down the entry says so, whether or not recommendations were ever asked for.
    Without it, the last kept answer (`GET …/candidates`) decides."""
    rec = req.matching_candidates or {}
    if candidate_rank is not None:
        cands = rec.get("candidates") or [] if rec.get("available") else []
        if not cands:
            raise invalid("candidate_rank", "dispatch.no_recommendation",
                          "尚无可用的匹配推荐：请先获取推荐（GET …/candidates）或指定承办对象人工派单",
                          "No recommendation to pick from: get candidates first, or give an assignee")
        if candidate_rank > len(cands):
            raise invalid("candidate_rank", "dispatch.rank_out_of_range", f"推荐只有 {len(cands)} 个",
                          f"There are only {len(cands)} candidates")
        c = cands[candidate_rank - 1]
        chosen = c["assignee"]
        if assignee is not None and (assignee.kind, assignee.id) != (chosen["kind"], chosen["id"]):
            raise invalid("assignee", "dispatch.assignee_mismatch", "承办对象与所选推荐不一致",
                          "The assignee differs from the chosen candidate")
        return chosen, {"dispatch_mode": "recommended",
                        "recommendation": {"need_id": rec.get("need_id"), "rank": candidate_rank,
                                           "provider": c["provider"], "cost": c.get("cost"),
                                           "distance_m": c.get("distance_m"), "reasons": c.get("reasons"),
                                           "candidates_at": rec.get("fetched_at")}}
    if assignee is None:
        raise invalid("assignee", "assignee.required", "派单须指定承办对象（或选择推荐 candidate_rank）",
                      "Dispatch needs an assignee (or a candidate_rank)")
    data: dict[str, Any] = {"dispatch_mode": "manual"}
    if matching_now is not None:
        if not matching_now.get("available", True):
            data["matching"] = matching_now
    elif rec and not rec.get("available", True):
        data["matching"] = {"available": False, "reason": rec.get("reason"), "at": rec.get("fetched_at")}
    return assignee.model_dump(), data
