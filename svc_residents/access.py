"""Who may see and change which resident records (object-level checks, OWASP API1).

- resident: their own household (scopes `person:<id>`, `household:<id>`); edits only their own person's
  preferences, consents and self-declared tags; may reveal only their own ID number and phone;
- proxy: only the person in `acting_for` (whatever place scopes the token also carries); no clear values;
- grid_worker: households and persons in their grid(s); masked output;
- community_staff / street_staff: everything in their community / street; may reveal clear values with a purpose;
- ops: masked read and administration everywhere, never clear values;
- dept_staff, system: only under a live exchange grant, with the fields the grant covers
  (svc_residents/grants.py): persons under `residents.persons` (look-up by exact ID number, read by id;
  persons/exchange.py), one household by id under `residents.households` (without its members;
  households/exchange.py); listing households and everything else 403;
- provider, evaluator: no access.

Places (codes, names, the hierarchy) are reference data any signed-in caller may read; who staffs a grid is
for the staff covering it and ops; creating places and naming grid workers is for community / street staff of
the scope and ops.

An object outside the caller's reach answers 404, so ids cannot be probed; a visible object the caller may
not change answers 403.
"""
from __future__ import annotations

from sqlalchemy import false, or_, true

from common.auth import Principal
from common.errors import Problem

PLACE_STAFF = ("grid_worker", "community_staff", "street_staff")
REVEAL_STAFF = ("community_staff", "street_staff")
READERS = ("resident", "proxy", *PLACE_STAFF, "ops")


def require_reader(principal: Principal) -> None:
    if principal.role not in READERS:
        raise Problem(403, "forbidden", (f"当前角色（{principal.role}）无权查看居民档案",
                                         f"Role {principal.role} may not read resident records"))


def require_staff(principal: Principal) -> None:
    if principal.role not in (*PLACE_STAFF, "ops"):
        raise Problem(403, "forbidden", ("只有网格员、社区或街道工作人员可以登记和修改居民档案",
                                         "Only grid workers and community or street staff may change records"))


def staff_covers(principal: Principal, grid_code: str | None) -> bool:
    if principal.role == "ops":
        return True
    return principal.role in PLACE_STAFF and principal.covers_place(grid_code)


def can_read_household(principal: Principal, household) -> bool:
    if principal.role == "resident":
        return household.id in principal.scope_values("household")
    if principal.role == "proxy":
        return False  # a proxy sees the person they act for, not the rest of the household
    return staff_covers(principal, household.grid_code)


def can_read_person(principal: Principal, person) -> bool:
    if principal.role == "resident":
        return (person.household_id in principal.scope_values("household")
                or person.id in principal.scope_values("person"))
    if principal.role == "proxy":
        return principal.acting_for is not None and person.id == principal.acting_for
    return staff_covers(principal, person.grid_code)


def is_self_or_proxy(principal: Principal, person) -> bool:
    """The person themselves, or the proxy acting for them: may set preferences, consents, self tags."""
    if principal.role == "resident":
        return person.id in principal.scope_values("person")
    if principal.role == "proxy":
        return principal.acting_for == person.id
    return False


def can_reveal(principal: Principal, person) -> bool:
    if principal.role in REVEAL_STAFF:
        return principal.covers_place(person.grid_code)
    if principal.role == "resident":
        return person.id in principal.scope_values("person")
    return False


def person_visibility(principal: Principal, model):
    """A SQL condition selecting the persons the caller may see (for lists and search)."""
    if principal.role == "ops":
        return true()
    if principal.role == "resident":
        return or_(model.household_id.in_(principal.scope_values("household") or ["-"]),
                   model.id.in_(principal.scope_values("person") or ["-"]))
    if principal.role == "proxy":
        return model.id == principal.acting_for if principal.acting_for else false()
    if principal.role in PLACE_STAFF:
        return _place_condition(principal, model.grid_code)
    return false()


def household_visibility(principal: Principal, model):
    if principal.role == "ops":
        return true()
    if principal.role == "resident":
        return model.id.in_(principal.scope_values("household") or ["-"])
    if principal.role in PLACE_STAFF:
        return _place_condition(principal, model.grid_code)
    return false()


def _place_condition(principal: Principal, column):
    prefixes = [v for kind in ("district", "street", "community", "grid") for v in principal.scope_values(kind)]
    if not prefixes:
        return false()
    return or_(*[column.startswith(p, autoescape=True) for p in prefixes])
