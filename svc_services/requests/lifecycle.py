"""The request lifecycle as ONE declared table: (state, action) → (new state, roles allowed, note required).

Rules that depend on more than state and role (a provider may only claim what was dispatched to it, a resident
may reopen only after a rating ≤ 2, …) live in `requests.service`; this table is the single source of which
moves exist, and `replay()` rebuilds a state from a timeline with it.
"""
from __future__ import annotations

from dataclasses import dataclass

STATES = ("submitted", "accepted", "rejected", "dispatched", "claimed", "returned", "in_progress", "resolved",
          "rated", "closed", "reopened", "escalated", "cancelled", "merged", "deliberating")
TERMINAL = frozenset({"rejected", "closed", "cancelled", "merged"})
# States in which work is still owed (SLA timers run). `deliberating` (a 大事 waiting for its topic's outcome,
# svc_services/deliberation/request_link.py) is a hold: no timer runs, and resuming moves the deadlines on by it.
OPEN = frozenset({"submitted", "accepted", "dispatched", "claimed", "returned", "in_progress", "reopened",
                  "escalated"})

STATE_ZH = {"submitted": "已提交", "accepted": "已受理", "rejected": "不予受理", "dispatched": "已派单",
            "claimed": "已接单", "returned": "已退单", "in_progress": "办理中", "resolved": "已办结",
            "rated": "已评价", "closed": "已关闭", "reopened": "已重办", "escalated": "已升级",
            "cancelled": "已撤销", "merged": "已合并", "deliberating": "居民议事中"}

ACTIONS = ("accept", "reject", "dispatch", "claim", "return", "start", "resolve", "rate", "close", "reopen",
           "escalate", "cancel", "merge")
ACTION_ZH = {"submit": "提交", "accept": "受理", "reject": "不予受理", "dispatch": "派单", "claim": "接单",
             "return": "退单", "start": "开始办理", "resolve": "办结", "rate": "评价", "close": "关闭",
             "reopen": "重办", "escalate": "升级", "cancel": "撤销", "merge": "合并", "absorb": "并入重复诉求",
             "deliberate": "提交居民议事", "resume": "议事后继续办理",
             "call": "紧急呼叫", "acknowledge": "呼叫应答",
             "book": "预约", "reschedule": "改约", "unbook": "取消预约", "appointment": "预约进展"}
# Timeline entries that record something without moving the request (from_state == to_state): a merge target
# notes the request merged into it (see requests.merge); an emergency's call-out notes each call and the
# acknowledgement (see svc_services.emergency); svc_matching's appointment feed notes each booking step
# (see svc_services.appointments).
ANNOTATIONS = ("absorb", "call", "acknowledge", "book", "reschedule", "unbook", "appointment")
# Outbox event per action: request.<past tense>.
EVENT = {"submit": "submitted", "accept": "accepted", "reject": "rejected", "dispatch": "dispatched",
         "claim": "claimed", "return": "returned", "start": "started", "resolve": "resolved", "rate": "rated",
         "close": "closed", "reopen": "reopened", "escalate": "escalated", "cancel": "cancelled",
         "merge": "merged", "deliberate": "deliberating", "resume": "resumed"}

OWNER = ("resident", "proxy")                    # the requester (checked against the request's person)
MANAGERS = ("community_staff", "street_staff", "ops")
GRID = ("grid_worker",)
HANDLERS = ("grid_worker", "dept_staff", "provider")   # who work dispatched to them
SYSTEM = ("system",)                             # the SLA scheduler and member systems


@dataclass(frozen=True)
class Rule:
    to: str
    roles: tuple[str, ...]
    note_required: bool = False


def _rules(states: tuple[str, ...], action: str, rule: Rule) -> dict[tuple[str, str], Rule]:
    return {(s, action): rule for s in states}


TRANSITIONS: dict[tuple[str, str], Rule] = {
    **_rules(("submitted", "escalated"), "accept", Rule("accepted", MANAGERS + GRID)),
    **_rules(("submitted", "escalated"), "reject", Rule("rejected", MANAGERS + GRID, note_required=True)),
    **_rules(("accepted", "returned", "reopened", "escalated"), "dispatch",
             Rule("dispatched", MANAGERS + GRID + SYSTEM)),
    **_rules(("dispatched",), "claim", Rule("claimed", HANDLERS)),
    **_rules(("dispatched", "claimed"), "return", Rule("returned", HANDLERS, note_required=True)),
    **_rules(("accepted", "claimed", "escalated"), "start", Rule("in_progress", HANDLERS + MANAGERS)),
    **_rules(("in_progress", "escalated"), "resolve", Rule("resolved", HANDLERS + MANAGERS, note_required=True)),
    **_rules(("resolved",), "rate", Rule("rated", OWNER)),
    **_rules(("resolved", "rated"), "close", Rule("closed", MANAGERS + OWNER + SYSTEM)),
    **_rules(("resolved", "rated"), "reopen", Rule("reopened", OWNER + MANAGERS, note_required=True)),
    **_rules(("submitted", "accepted", "dispatched", "claimed", "returned", "in_progress", "reopened", "escalated"),
             "escalate", Rule("escalated", MANAGERS + GRID + ("dept_staff",) + SYSTEM, note_required=True)),
    **_rules(("submitted", "accepted", "dispatched", "returned", "reopened", "escalated"), "cancel",
             Rule("cancelled", OWNER + ("ops",))),
    **_rules(("submitted", "accepted", "escalated", "reopened"), "merge",
             Rule("merged", MANAGERS + GRID, note_required=False)),
}

# 大事社区议: moves no caller makes (the API does not take them) but a request's topic does, by its opening and its
# outcome (svc_services/deliberation/request_link.py): escalated to a topic, the request waits; passed → the work
# goes on, not passed (or declined, withdrawn) → answered with the outcome.
TOPIC_ACTIONS = ("deliberate", "resume")
TOPIC_MOVES: dict[tuple[str, str], Rule] = {
    **_rules(("submitted", "accepted", "dispatched", "claimed", "returned", "in_progress", "reopened", "escalated"),
             "deliberate", Rule("deliberating", (), note_required=True)),
    **_rules(("deliberating",), "resume", Rule("in_progress", (), note_required=True)),
    **_rules(("deliberating",), "resolve", Rule("resolved", (), note_required=True)),
}
MOVES = {**TRANSITIONS, **TOPIC_MOVES}   # every move a timeline may hold

assert all(s in STATES and r.to in STATES and a in ACTIONS + TOPIC_ACTIONS for (s, a), r in MOVES.items())
assert not any(s in TERMINAL for s, _ in MOVES), "terminal states have no way out"


def allowed_actions(state: str, role: str | None = None) -> list[str]:
    """Actions possible from `state` (for `role`, when given), in table order."""
    return [a for a in ACTIONS if (state, a) in TRANSITIONS
            and (role is None or role in TRANSITIONS[(state, a)].roles)]


def replay(entries: list[tuple[str, str | None, str]]) -> str:
    """Rebuild the state from a timeline of (action, from_state, to_state), checking every step is legal."""
    state: str | None = None
    for action, from_state, to_state in entries:
        if action == "submit":
            if state is not None or to_state != "submitted":
                raise ValueError("submit must be the first entry")
        elif action in ANNOTATIONS:
            if state is None or from_state != state or to_state != state:
                raise ValueError(f"annotation {action} must keep the state {state}")
        else:
            rule = MOVES.get((state, action))
            if rule is None or from_state != state or rule.to != to_state:
                raise ValueError(f"illegal step {state} --{action}--> {to_state}")
        state = to_state
    if state is None:
        raise ValueError("empty timeline")
    return state
