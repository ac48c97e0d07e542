"""Passing rules and participation quorums of a vote: the one place saying what carries a motion.

《民法典》第二百七十八条 (matters owners decide together): the decision needs owners holding at least two thirds of
the exclusive area AND at least two thirds of the owners taking part in the vote (参与表决); 筹集维修资金, 改建、重建
建筑物及其附属设施 and 改变共有部分的用途或者利用共有部分从事经营活动 (items 6 to 8) then need the consent of three
quarters of the participating area and three quarters of the participating owners; every other such matter (选聘、
解聘物业, 使用维修资金, …) more than half of each. OneNet holds no area and no title deeds: it counts the persons or
households the vote's eligibility names, so it applies the head-count half of that rule, never the area half.

Two thirds of the ballots, which the article asks of no approval, stays as a rule a community's own 议事规则 may
choose. Shares are of the ballots counted (abstentions included), the first option being the motion; a quorum is of the
electorate counted at close."""

from __future__ import annotations

from typing import Literal

from common.errors import invalid

Rule = Literal["simple", "two_thirds", "three_quarters"]
QuorumRule = Literal["percent", "two_thirds"]
# (numerator, denominator, strict): the motion's ballots × den compared with the counted ballots × num
_SHARES: dict[str, tuple[int, int, bool]] = {
    "simple": (1, 2, True),
    "two_thirds": (2, 3, False),
    "three_quarters": (3, 4, False),
}
_ORDER = ("simple", "two_thirds", "three_quarters")
DEFAULT_QUORUM_PERCENT = 50
# 物业 (选聘、解聘物业服务企业): participation ≥ 2/3, then any rule, a simple majority at least.
# 维修资金: the category does not tell 使用 (item 5, more than half) from 筹集 (item 6, three quarters): the
# stricter applies.
ARTICLE_278: dict[str, str] = {"property": "simple", "maintenance_fund": "three_quarters"}


def carried(rule: str, motion: int, cast: int) -> bool:
    num, den, strict = _SHARES[rule]
    return cast > 0 and (motion * den > cast * num if strict else motion * den >= cast * num)


def quorum_met(quorum_rule: str, quorum_percent: int | None, cast: int, eligible: int) -> bool:
    if eligible <= 0:
        return False
    if quorum_rule == "two_thirds":
        return cast * 3 >= eligible * 2
    return cast * 100 >= (quorum_percent or 0) * eligible


def settle(category: str, rule: str, quorum_rule: str, quorum_percent: int | None) -> int | None:
    """The quorum percent to store (None for an exact two-thirds quorum); refuses what the category's law forbids.
    An integer percent cannot state two thirds exactly (67 % asks 5 of 6, two thirds 4 of 6): `quorum_rule`
    two_thirds does."""
    if quorum_rule == "two_thirds":
        if quorum_percent is not None:
            raise invalid(
                "quorum_percent",
                "vote.quorum_conflict",
                "三分之二参与率不另设百分比",
                "A two-thirds quorum takes no quorum_percent",
            )
        quorum_percent = None
    elif quorum_percent is None:
        quorum_percent = DEFAULT_QUORUM_PERCENT
    least = ARTICLE_278.get(category)
    if least is None:
        return quorum_percent
    if _ORDER.index(rule) < _ORDER.index(least):  # only three_quarters is above the lowest rule
        raise invalid(
            "rule",
            "vote.three_quarters_required",
            "维修资金事项须经参与表决人数四分之三以上同意（《民法典》第二百七十八条）：rule 取 three_quarters",
            "Maintenance-fund matters need three quarters of the ballots (Civil Code art. 278)",
        )
    if quorum_rule != "two_thirds" and quorum_percent * 3 < 200:
        raise invalid(
            "quorum_percent",
            "vote.two_thirds_turnout",
            "物业、维修资金事项须有三分之二以上的应投人数参与表决"
            "（《民法典》第二百七十八条）：quorum_rule 取 two_thirds",
            "Property and maintenance-fund votes need two thirds of the electorate to take part "
            "(Civil Code art. 278): quorum_rule two_thirds",
        )
    return quorum_percent
