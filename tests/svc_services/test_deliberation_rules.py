"""Passing rules and quorums (《民法典》第二百七十八条, its head-count half: OneNet holds no area): three quarters of
the ballots counted at its exact boundary, an exact two-thirds participation quorum, what property and
maintenance-fund votes must declare, and a bad rule refused 422 naming its field, in Chinese, nothing written."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from svc_services.deliberation.models import Vote
from svc_services.deliberation.rules import carried, quorum_met
from tests.svc_services.test_deliberation import open_topic, resident, svc  # noqa: F401  (svc: the fixture)
from tests.svc_services.test_deliberation_ballots import staff


def test_shares_and_quorums_at_their_boundaries():
    assert [carried("three_quarters", m, c) for m, c in ((3, 4), (2, 3), (6, 8), (5, 7))] == [True, False, True, False]
    assert [carried("two_thirds", m, c) for m, c in ((2, 3), (3, 5))] == [True, False]
    assert [carried("simple", m, c) for m, c in ((2, 4), (3, 5), (0, 0))] == [False, True, False]
    assert [quorum_met("two_thirds", None, c, e) for c, e in ((4, 6), (3, 5), (2, 3), (0, 0))] == [
        True, False, True, False]
    assert quorum_met("percent", 67, 4, 6) is False   # why a percent cannot state two thirds


def vote_body(now, **over) -> dict:
    return {"options": ["同意", "反对", "弃权"], "eligibility": "household_head", "opens_at": now.isoformat(),
            "closes_at": (now + timedelta(days=3)).isoformat(), **over}


async def test_three_quarters_passes_at_3_of_4_and_fails_at_2_of_3(svc, auth):  # noqa: F811
    """Six heads of household. Three quarters of the ballots counted: 3 of 4 passes, 2 of 3 fails; a maintenance-fund
    vote with the exact two-thirds quorum passes with 4 of the 6 taking part (3 to 1) where a 67 % quorum fails the
    same ballots, and 4 of 6 in favour (two thirds, not three quarters) fails."""
    now = svc.app.state.clock.now()

    async def vote(category: str, ayes: int, noes: int, **rule) -> dict:
        t = await open_topic(svc, auth, category=category, title=f"表决规则 {category} {ayes}:{noes} {rule}")
        r = await svc.post(f"/services/v1/topics/{t['id']}/vote", headers=staff(auth), json=vote_body(now, **rule))
        assert r.status_code == 201, r.text
        for n, option in enumerate(["同意"] * ayes + ["反对"] * noes, start=1):
            r = await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=resident(auth, n),
                               json={"option": option})
            assert r.status_code == 200, r.text
        return t

    exact = {"rule": "three_quarters", "quorum_rule": "two_thirds"}
    topics = [await vote("facilities", 3, 1, rule="three_quarters"), await vote("facilities", 2, 1, rule="three_quarters"),
              await vote("maintenance_fund", 3, 1, **exact), await vote("facilities", 3, 1, rule="three_quarters",
                                                                       quorum_percent=67),
              await vote("maintenance_fund", 4, 2, **exact)]
    svc.app.state.clock.advance(days=3, minutes=1)
    got = []
    for t in topics:
        res = (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).json()["result"]
        stage = (await svc.get(f"/services/v1/topics/{t['id']}", headers=staff(auth))).json()["stage"]
        got.append((res["eligible"], res["cast"], res["quorum_met"], res["passed"], stage))
    assert got == [(6, 4, True, True, "passed"), (6, 3, True, False, "rejected"), (6, 4, True, True, "passed"),
                   (6, 4, False, False, "rejected"), (6, 6, True, False, "rejected")]


async def test_a_bad_rule_is_a_422_naming_the_field_and_nothing_is_written(svc, auth):  # noqa: F811
    now = svc.app.state.clock.now()
    fund = await open_topic(svc, auth, category="maintenance_fund", title="筹集维修资金")
    prop = await open_topic(svc, auth, category="property", title="续聘物业服务企业")
    other = await open_topic(svc, auth, category="facilities", title="更换健身器材")
    cases = [
        (other, {"rule": "majority"}, "rule", None),
        (other, {"quorum_rule": "half"}, "quorum_rule", None),
        (other, {"quorum_rule": "two_thirds", "quorum_percent": 70}, "quorum_percent", "vote.quorum_conflict"),
        (fund, {}, "rule", "vote.three_quarters_required"),
        (fund, {"rule": "two_thirds", "quorum_rule": "two_thirds"}, "rule", "vote.three_quarters_required"),
        (fund, {"rule": "three_quarters"}, "quorum_percent", "vote.two_thirds_turnout"),      # 50 % by default
        (fund, {"rule": "three_quarters", "quorum_percent": 66}, "quorum_percent", "vote.two_thirds_turnout"),
        (prop, {"quorum_percent": 60}, "quorum_percent", "vote.two_thirds_turnout"),
    ]
    for t, over, field, code in cases:
        r = await svc.post(f"/services/v1/topics/{t['id']}/vote", headers=staff(auth), json=vote_body(now, **over))
        body = r.json()
        assert (r.status_code, body["errors"][0]["field"]) == (422, field), (over, body)
        assert code is None or body["errors"][0]["code"] == code, (over, body)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in body["detail"] + body["errors"][0]["message"]), body
    async with svc.app.state.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Vote))).scalar_one() == 0
    for t in (fund, prop, other):
        assert (await svc.get(f"/services/v1/topics/{t['id']}", headers=staff(auth))).json()["stage"] == "open"

    r = await svc.post(f"/services/v1/topics/{fund['id']}/vote", headers=staff(auth),
                       json=vote_body(now, rule="three_quarters", quorum_percent=67))   # a stricter percent is fine
    assert r.status_code == 201, r.text
    r = await svc.post(f"/services/v1/topics/{prop['id']}/vote", headers=staff(auth),
                       json=vote_body(now, quorum_rule="two_thirds"))                    # a majority of two thirds
    assert r.status_code == 201, r.text
    assert (r.json()["rule"], r.json()["quorum_rule"], r.json()["quorum_percent"]) == ("simple", "two_thirds", None)
    r = await svc.post(f"/services/v1/topics/{other['id']}/vote", headers=staff(auth), json=vote_body(now))
    assert (r.json()["rule"], r.json()["quorum_rule"], r.json()["quorum_percent"]) == ("simple", "percent", 50)
