"""The survey lifecycle as one declared table: (state, action) → Rule (new state, what the move does).

draft → published (the questionnaire is frozen: a published version never changes; a change is a new revision,
a new draft) → closed (no more responses; an anonymous survey's responses are re-written in random order and the
undelivered tokens dropped, see service.close). Who may act is the same for every move (staff managing the
survey's place, ops: service.check_manager)."""
from __future__ import annotations

from dataclasses import dataclass

STATES = ("draft", "published", "closed")
STATE_ZH = {"draft": "草稿", "published": "已发布", "closed": "已结束"}
ACTIONS = ("publish", "close")


@dataclass(frozen=True)
class Rule:
    to: str
    # what the move does besides the state (service.transition runs these steps)
    freezes: bool = False       # the questionnaire may no longer change
    ends_responses: bool = False


TRANSITIONS: dict[tuple[str, str], Rule] = {
    ("draft", "publish"): Rule("published", freezes=True),
    ("published", "close"): Rule("closed", ends_responses=True),
}


def allowed(state: str) -> list[str]:
    return [a for (s, a) in TRANSITIONS if s == state]


def replay(actions: list[str], start: str = "draft") -> str:
    """The state after the actions, or KeyError at the first move the table does not declare."""
    state = start
    for a in actions:
        state = TRANSITIONS[(state, a)].to
    return state
