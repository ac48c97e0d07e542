"""Who may see and act on a request (per object, OWASP API1): `can_see` for a loaded request, `visibility_clause`
for a query (the two say the same), `may_act` on top of the lifecycle table's role check."""
from __future__ import annotations

from sqlalchemy import and_, false, or_

from common.auth import Principal
from common.errors import Problem
from svc_services.requests.lifecycle import OWNER
from svc_services.requests.models import ServiceRequest

PLACE_STAFF = ("grid_worker", "community_staff", "street_staff")
UNSEEN = Problem(404, "request.not_found", ("诉求不存在或无权查看", "Request not found"))


def can_see(principal: Principal, req: ServiceRequest) -> bool:
    role = principal.role
    if role in ("ops", "system"):
        return True
    if role in OWNER:
        return principal.person_id is not None and req.person_id == principal.person_id
    if role in PLACE_STAFF:
        return principal.covers_place(req.grid)
    if role == "provider":
        return req.assignee_kind == "provider" and req.assignee_id in principal.scope_values("provider")
    if role == "dept_staff":
        depts = principal.scope_values("dept")
        return ((req.assignee_kind == "department" and req.assignee_id in depts)
                or (req.escalation_level == "department" and req.department in depts))
    return False


def visibility_clause(principal: Principal):
    role = principal.role
    R = ServiceRequest
    if role in ("ops", "system"):
        return None
    if role in OWNER:
        return R.person_id == principal.person_id if principal.person_id else false()
    if role in PLACE_STAFF:
        prefixes = [v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)]
        return or_(*[R.grid.startswith(p) for p in prefixes]) if prefixes else false()
    if role == "provider":
        ids = principal.scope_values("provider")
        return and_(R.assignee_kind == "provider", R.assignee_id.in_(ids)) if ids else false()
    if role == "dept_staff":
        depts = principal.scope_values("dept")
        if not depts:
            return false()
        return or_(and_(R.assignee_kind == "department", R.assignee_id.in_(depts)),
                   and_(R.escalation_level == "department", R.department.in_(depts)))
    return false()


def may_act(principal: Principal, req: ServiceRequest, action: str) -> bool:
    """Object-level check on top of the table's role check."""
    role = principal.role
    if role in ("ops", "system"):
        return True
    if role in OWNER:
        return principal.person_id is not None and req.person_id == principal.person_id
    if role in ("community_staff", "street_staff", "grid_worker"):
        if not principal.covers_place(req.grid):
            return False
        if role == "grid_worker" and action in ("claim", "return") and req.assignee_kind != "grid_worker":
            return False
        return True
    if role in ("provider", "dept_staff"):
        return can_see(principal, req)
    return False
