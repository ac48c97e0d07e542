"""Who reads which messages and manages which contacts (checked here, in the service that owns the data).

- Every signed-in person has one inbox: a resident's is their person's (`person:<id>`), a proxy's the person they
  act for (the person and their proxy read the same messages), anyone else's their own account's
  (`user:<username>`), a proxy's only when its authorisation allows `notifications.inbox` (common.acting; every
  inbox endpoint passes here). Member systems (apps, departments) have none: 403. A message of another inbox answers
  404, as an unknown one.
- A message's delivery record: its recipient, community and street staff whose place covers the message's
  community, and ops.
- Sending a templated message: grid workers, community and street staff to a person in their place (else the
  same 422 as for nobody), ops to anyone; never the emergency or safety urgency (those pass opt-outs and quiet
  hours, so only the platform's own rules use them).
- Staff contacts: community and street staff for a grid, community or street scope within their place; ops for
  every scope (departments and providers too).
- The notice feed (`PUT /residents/v1/notices/…`): the system members of `notice_sources` and ops.
"""
from __future__ import annotations

from common import acting
from common.auth import Principal
from common.errors import NotFound, Problem

SENDERS = ("grid_worker", "community_staff", "street_staff", "ops")
CONTACT_ADMINS = ("community_staff", "street_staff", "ops")
PLACE_SCOPES = ("grid", "community", "street")
MESSAGE_NOT_FOUND = NotFound("notification.not_found", ("没有这条消息", "Unknown message"))


def inbox_of(principal: Principal) -> str:
    if principal.role == "system" or principal.user == principal.member:  # a member calling as itself
        raise Problem(403, "notification.no_inbox", ("系统成员没有消息收件箱", "Member systems have no inbox"))
    if principal.role in ("resident", "proxy"):
        person = principal.person_id
        if not person:
            raise Problem(403, "notification.no_person", ("令牌未关联居民", "The token names no person"))
        acting.check(principal, "notifications.inbox")
        return f"person:{person}"
    return f"user:{principal.user}"


def may_see_deliveries(principal: Principal, note) -> bool:
    if principal.role == "ops":
        return True
    if principal.role in ("community_staff", "street_staff") and note.community_code:
        return principal.covers_place(note.community_code)
    return principal.role != "system" and inbox_of(principal) == note.recipient


def require_sender(principal: Principal) -> None:
    if principal.role not in SENDERS:
        raise Problem(403, "forbidden", ("当前角色无权发送消息", "This role may not send messages"))


def may_manage_contact(principal: Principal, scope: str) -> bool:
    if principal.role == "ops":
        return True
    kind, _, value = scope.partition(":")
    return principal.role in CONTACT_ADMINS and kind in PLACE_SCOPES and principal.covers_place(value)


def require_contact_admin(principal: Principal) -> None:
    if principal.role not in CONTACT_ADMINS:
        raise Problem(403, "forbidden", ("只有社区、街道工作人员和运维可以登记工作人员联系方式",
                                         "Only community or street staff and ops manage staff contacts"))
