"""A topic's stages as ONE declared table: (stage, action) → Rule(new stage, roles allowed, note required).

议题征集 → 协商讨论 → 议事会 → 表决 → 决议落实 → 办结. Who may act on which topic (scope, proposer) lives in
`deliberation.access`; this table is the single source of which moves exist, and `replay()` checks a timeline.
"""
from __future__ import annotations

from dataclasses import dataclass

STAGES = ("proposed", "open", "meeting", "voting", "passed", "rejected", "resolution", "executed", "closed",
          "withdrawn")
TERMINAL = frozenset({"executed", "closed", "withdrawn"})
# stages in which the scope's residents discuss (a comment elsewhere is refused)
DISCUSSION = frozenset({"proposed", "open", "meeting", "voting"})
STAGE_ZH = {"proposed": "征集联署", "open": "协商讨论", "meeting": "议事会", "voting": "表决中", "passed": "表决通过",
            "rejected": "未通过", "resolution": "决议落实", "executed": "已落实", "closed": "已关闭",
            "withdrawn": "已撤回"}

MANAGERS = ("community_staff", "street_staff", "ops")
GRID = ("grid_worker",)
OWNER = ("resident", "proxy")   # the proposer (checked against the topic's proposer)
SYSTEM = ("system",)            # the co-sign threshold, the vote's close, the last task done


@dataclass(frozen=True)
class Rule:
    to: str
    roles: tuple[str, ...]
    note_required: bool = False


def _rules(stages: tuple[str, ...], action: str, rule: Rule) -> dict[tuple[str, str], Rule]:
    return {(s, action): rule for s in stages}


TRANSITIONS: dict[tuple[str, str], Rule] = {
    **_rules(("proposed",), "accept", Rule("open", MANAGERS + GRID + SYSTEM)),  # enough co-signers
    **_rules(("proposed", "open", "meeting"), "decline", Rule("closed", MANAGERS, note_required=True)),
    **_rules(("proposed", "open"), "withdraw", Rule("withdrawn", OWNER + MANAGERS)),
    **_rules(("open", "meeting"), "convene", Rule("meeting", MANAGERS + GRID)),    # a meeting is called
    **_rules(("open", "meeting"), "call_vote", Rule("voting", MANAGERS + GRID)),   # a vote is set up
    **_rules(("voting",), "pass", Rule("passed", MANAGERS + GRID + SYSTEM)),       # the tally at close
    **_rules(("voting",), "fail", Rule("rejected", MANAGERS + GRID + SYSTEM)),
    **_rules(("passed",), "resolve", Rule("resolution", MANAGERS)),                # 决议 with owners and tasks
    **_rules(("resolution",), "complete", Rule("executed", MANAGERS + SYSTEM)),    # every task done
    **_rules(("rejected", "passed"), "close", Rule("closed", MANAGERS, note_required=True)),
}
INITIAL = {"proposal": "proposed", "request": "open", "staff": "open"}
ACTIONS = tuple(dict.fromkeys(a for _s, a in TRANSITIONS))

assert all(s in STAGES and r.to in STAGES for (s, _a), r in TRANSITIONS.items())
assert not any(s in TERMINAL for s, _ in TRANSITIONS), "terminal stages have no way out"


def allowed_actions(stage: str, role: str | None = None) -> list[str]:
    return [a for a in ACTIONS if (stage, a) in TRANSITIONS
            and (role is None or role in TRANSITIONS[(stage, a)].roles)]


def replay(entries: list[tuple[str, str | None, str]]) -> str:
    """Rebuild the stage from a timeline of (action, from_stage, to_stage), checking every step is legal."""
    stage: str | None = None
    for action, from_stage, to_stage in entries:
        if action == "create":
            if stage is not None or to_stage not in INITIAL.values():
                raise ValueError("create must be the first entry")
        else:
            rule = TRANSITIONS.get((stage, action))
            if rule is None or from_stage != stage or rule.to != to_stage:
                raise ValueError(f"illegal step {stage} --{action}--> {to_stage}")
        stage = to_stage
    if stage is None:
        raise ValueError("empty timeline")
    return stage
