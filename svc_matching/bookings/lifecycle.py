"""The booking lifecycle as ONE declared table: (state, action) → Rule(new state, who may).

`request` opens a booking (confirmed, pending_approval, or waitlisted when the slot is full and the booker asked to
wait); `promote` is the waitlist's move when a place frees (the system, in order of request). Who is the owner or
covering staff is checked per object in `bookings.service`; this table is the one source of which moves exist.
"""
from __future__ import annotations

from dataclasses import dataclass

STATES = ("pending_approval", "confirmed", "waitlisted", "checked_in", "completed", "cancelled", "no_show",
          "rejected")
TERMINAL = frozenset({"completed", "cancelled", "no_show", "rejected"})
HOLDING = ("pending_approval", "confirmed", "checked_in")    # states that hold one of the slot's places
ACTIVE = HOLDING + ("waitlisted",)
STATE_ZH = {"pending_approval": "待审批", "confirmed": "已确认", "waitlisted": "候补中", "checked_in": "已签到",
            "completed": "已完成", "cancelled": "已取消", "no_show": "爽约", "rejected": "未批准"}
ACTIONS = ("approve", "reject", "check_in", "complete", "cancel", "no_show", "reschedule", "promote")
ACTION_ZH = {"request": "预约", "approve": "批准", "reject": "不批准", "check_in": "签到", "complete": "完成",
             "cancel": "取消", "no_show": "登记爽约", "reschedule": "改约", "promote": "候补转正"}

OWNER = "owner"          # the booker: the resident, their proxy, the organisation, the staff member who booked
STAFF = "staff"          # place staff covering the resource, ops
SYSTEM = "system"        # the waitlist


@dataclass(frozen=True)
class Rule:
    to: str | None            # None: stays (reschedule) or decided by the approval rule (promote)
    who: tuple[str, ...]
    note_required: bool = False


TRANSITIONS: dict[tuple[str, str], Rule] = {
    ("pending_approval", "approve"): Rule("confirmed", (STAFF,)),
    ("pending_approval", "reject"): Rule("rejected", (STAFF,), note_required=True),
    ("pending_approval", "cancel"): Rule("cancelled", (OWNER, STAFF)),
    ("confirmed", "check_in"): Rule("checked_in", (STAFF,)),
    ("confirmed", "cancel"): Rule("cancelled", (OWNER, STAFF)),
    ("confirmed", "no_show"): Rule("no_show", (STAFF,)),
    ("confirmed", "reschedule"): Rule(None, (OWNER, STAFF)),
    ("pending_approval", "reschedule"): Rule(None, (OWNER, STAFF)),
    ("checked_in", "complete"): Rule("completed", (STAFF,)),
    ("waitlisted", "cancel"): Rule("cancelled", (OWNER, STAFF)),
    ("waitlisted", "promote"): Rule(None, (SYSTEM,)),
}

assert all(s in STATES and (r.to is None or r.to in STATES) and a in ACTIONS for (s, a), r in TRANSITIONS.items())
assert not any(s in TERMINAL for s, _ in TRANSITIONS), "terminal states have no way out"


def allowed_actions(state: str, who: set[str] | None = None) -> list[str]:
    return [a for a in ACTIONS if (state, a) in TRANSITIONS and a != "promote"
            and (who is None or set(TRANSITIONS[(state, a)].who) & who)]
