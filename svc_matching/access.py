"""Who may see and change what in svc_matching (object-level checks, OWASP API1; DESIGN.md, DOMAIN.md).

- The resource directory (organisations, locations, services, taxonomy terms; the HSDS reads) is the public
  社区资源清单: any signed-in caller reads it.
- Volunteers (name, home position), needs (person, household, place, description), offers and time-bank
  accounts are personal records of a place:
  - resident: their own (a need for their person, their volunteer record, their accounts); proxy: those of the
    person they act for;
  - grid_worker / community_staff / street_staff: what lies in their place scopes (codes nest by prefix,
    `Principal.covers_place`); a time-bank account lies where its person lives (the person-place replica,
    people/places.py), a community's issuance and redemption accounts in that community;
  - provider: the offers made to its organisation (or to the volunteer it is), and the needs behind them;
  - ops: everything (runs the platform);
  - dept_staff, system, evaluator: none of it, to read or to write. A department or a member system reaches data
    only through the exchange under a grant, and the exchange catalogue has no svc_matching resource but
    `matching.resources` (the directory), so no grant gives them a need, an offer, a volunteer or an account; the
    community runs its needs list and matches it (DOMAIN.md). Departments publish resources to the directory;
    evaluators read the reports (aggregates).
- An object outside the caller's reach answers 404, the same as an unknown one (ids cannot be probed); a visible
  object the caller may not change answers 403.
"""
from __future__ import annotations

from sqlalchemy import false, or_, true

from common.auth import Principal

PLACE_STAFF = ("grid_worker", "community_staff", "street_staff")
PLACE_KINDS = ("district", "street", "community", "grid")


def sees_place(principal: Principal, code: str | None) -> bool:
    """Ops, or place staff whose scopes cover the code. (`covers_place` alone would also admit `system`.)"""
    if principal.role == "ops":
        return True
    return principal.role in PLACE_STAFF and principal.covers_place(code)


def is_own(principal: Principal, person_id: str | None) -> bool:
    """The caller is the person (a resident) or acts for them (a proxy)."""
    return person_id is not None and principal.role in ("resident", "proxy") and principal.person_id == person_id


def place_condition(principal: Principal, column):
    """A SQL condition selecting rows whose place `column` the caller sees (lists)."""
    if principal.role == "ops":
        return true()
    prefixes = [v for kind in PLACE_KINDS for v in principal.scope_values(kind)]
    if principal.role not in PLACE_STAFF or not prefixes:
        return false()
    return or_(*[column.startswith(p, autoescape=True) for p in prefixes])
