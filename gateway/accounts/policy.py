"""Who may manage which account (the one place this rule is written).

An administrator is an account with `admin` set: a community administrator (community_staff), a street
administrator (street_staff) or a platform administrator (ops). Each manages only accounts of its own place
and of the roles below it:

| administrator | may create, change, disable, unlock | within |
|---|---|---|
| community (community_staff + admin, `community:C`) | grid workers; community staff (not administrators) | C |
| street (street_staff + admin, `street:S`) | grid workers; community staff and community administrators; street staff (not administrators) | S |
| platform (ops + admin) | every account | everywhere |

"Within" means every place scope of the account lies in the administrator's place (place codes nest by prefix)
and the account has at least one. An account outside the administrator's place is answered 404, as an unknown
one (its existence does not leak); one inside it but of a role above what the administrator may manage is 403.
Nobody changes their own role, scopes, admin flag or status (another administrator does).
"""
from __future__ import annotations

from common.errors import Problem, invalid

# the place scope kind and code length each staff role's scopes must have
ROLE_PLACE = {"grid_worker": ("grid", 15), "community_staff": ("community", 12), "street_staff": ("street", 9)}
MANAGEABLE_ROLES = ("grid_worker", "community_staff", "street_staff", "dept_staff", "provider", "evaluator", "ops",
                    "resident", "proxy")


def level(user) -> str | None:
    """community | street | platform for an administrator, else None."""
    if not getattr(user, "admin", False) or user.status != "active":
        return None
    return {"community_staff": "community", "street_staff": "street", "ops": "platform"}.get(user.role)


def places(scopes) -> list[str]:
    out = []
    for s in scopes or ():
        kind, _, value = s.partition(":")
        if kind in ("grid", "community", "street", "district"):
            out.append(value)
    return out


def admin_places(admin) -> list[str]:
    lv = level(admin)
    if lv == "platform":
        return [""]
    return [v for s in admin.scopes or () if s.partition(":")[0] == lv for v in [s.partition(":")[2]] if v]


def in_place(admin, scopes) -> bool:
    """Every place scope of `scopes` lies within the administrator's place (and there is one)."""
    if level(admin) == "platform":
        return True
    mine, theirs = admin_places(admin), places(scopes)
    return bool(theirs) and all(any(p.startswith(m) for m in mine) for p in theirs)


def may_hold(admin, role: str, is_admin: bool) -> bool:
    """May this administrator give (or manage) an account of `role` (an administrator when `is_admin`)?"""
    lv = level(admin)
    if lv == "platform":
        return True
    if lv == "street":
        return role == "grid_worker" or role == "community_staff" or (role == "street_staff" and not is_admin)
    if lv == "community":
        return role == "grid_worker" or (role == "community_staff" and not is_admin)
    return False


def not_found() -> Problem:
    return Problem(404, "account.not_found", ("账号不存在", "Unknown account"))


def above_scope() -> Problem:
    return Problem(403, "account.above_scope", ("无权管理该账号：其角色不低于您的管理范围",
                                                "You may not manage this account: its role is not below yours"))


def check_target(admin, target) -> None:
    """The administrator may manage this existing account (404 outside its place, 403 above its role)."""
    if target is None or not in_place(admin, target.scopes):
        raise not_found()
    if target.username == admin.username or not may_hold(admin, target.role, bool(target.admin)):
        raise above_scope()


def check_grant(admin, role: str, scopes: list[str], is_admin: bool, field_prefix: str = "") -> None:
    """What an administrator gives (on create or change): a role it may give, place scopes of that role's
    kind, inside its own place."""
    if not may_hold(admin, role, is_admin):
        raise invalid(field_prefix + ("admin" if is_admin and may_hold(admin, role, False) else "role"),
                      "account.role_not_allowed", f"您不能设置该角色（{role}{'，管理员' if is_admin else ''}）",
                      f"You may not give the role {role}{' as administrator' if is_admin else ''}", status=403)
    if is_admin and role not in ("community_staff", "street_staff", "ops"):
        raise invalid(field_prefix + "admin", "account.admin_role", "只有社区、街道工作人员和运维可以是管理员",
                      "Only community staff, street staff and ops can be administrators")
    want = ROLE_PLACE.get(role)
    if want is not None:
        kind, length = want
        for s in scopes:
            k, _, v = s.partition(":")
            if k != kind or len(v) != length or not v.isdigit():
                raise invalid(field_prefix + "scopes", "account.scope_kind",
                              f"该角色的范围应为 {kind}:<{length} 位区划代码>",
                              f"This role's scopes must be {kind}:<{length}-digit place code>")
        if not scopes:
            raise invalid(field_prefix + "scopes", "account.scope_missing", "需要至少一个管辖范围",
                          "At least one scope is required")
    if not in_place(admin, scopes) and (scopes or level(admin) != "platform"):
        raise invalid(field_prefix + "scopes", "account.scope_outside", "范围超出您的管辖区域",
                      "The scopes lie outside your area", status=403)
