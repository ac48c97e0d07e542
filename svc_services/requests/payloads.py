"""What a request looks like to its callers: `to_out` is THE one place a `RequestOut` is made (every answer, the
intake's included), `event_data` the one place an event's data is made."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from common.auth import Principal
from svc_services.codes import ONLINE_CHANNELS
from svc_services.requests.access import may_act
from svc_services.requests.lifecycle import STATE_ZH, allowed_actions
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.requests.schemas import RequestOut, TimelineOut

_COLUMNS = tuple(c.key for c in ServiceRequest.__table__.columns)


def to_out(req: ServiceRequest, principal: Principal | None = None,
           timeline: list[TimelineEntry] | None = None) -> RequestOut:
    values = {key: getattr(req, key) for key in _COLUMNS}
    out = RequestOut.model_validate({**values, "state_name": STATE_ZH.get(req.state, req.state)})
    if principal is not None:
        out.allowed_actions = [a for a in allowed_actions(req.state, principal.role)
                               if may_act(principal, req, a)]
    if timeline is not None:
        out.timeline = [TimelineOut.model_validate(t) for t in timeline]
    return out


def event_data(req: ServiceRequest, action: str, from_state: str | None, principal: Principal,
               occurred_at: datetime, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    data = {
        "request_id": req.id, "action": action, "from_state": from_state, "to_state": req.state,
        "version": req.version, "channel": req.channel, "online": req.channel in ONLINE_CHANNELS,
        "item_code": req.item_code, "item_version": req.item_version, "category": req.category,
        "department": req.department,
        "departments": sorted({req.department} | ({req.assignee_id} if req.assignee_kind == "department" else set())),
        "priority": req.priority, "community": req.community, "grid": req.grid,
        "proxy": req.proxy_user is not None, "actor_role": principal.role,
        "escalation_level": req.escalation_level, "assignee_kind": req.assignee_kind, "overdue": req.overdue,
        "submitted_at": iso(req.created_at), "accepted_at": iso(req.accepted_at),
        "first_response_at": iso(req.first_response_at), "started_at": iso(req.started_at),
        "resolved_at": iso(req.resolved_at), "closed_at": iso(req.closed_at),
        "response_due_at": iso(req.response_due_at), "resolution_due_at": iso(req.resolution_due_at),
        "occurred_at": iso(occurred_at),
    }
    if req.rating is not None:
        data["rating"] = req.rating
    if extra:
        data.update(extra)
    return data
