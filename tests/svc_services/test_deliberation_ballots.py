"""记名投票 (issue 28): a named vote's ballots (who chose what) are listed once counted, to whoever sees the topic;
before the count, or for a secret vote, nobody's choice is shown. Eligibility is decided at close: a ballot of
someone who has since left the electorate is kept and hashed but set aside, not counted."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from svc_services.deliberation.models import Ballot
from tests.svc_services.test_deliberation import (  # noqa: F401  (svc: the fixture)
    OTHER, XF, electors, open_topic, resident, svc, voting,
)


def staff(auth):
    return auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")


async def test_named_ballots_after_the_count_and_never_for_a_secret_vote(svc, auth):  # noqa: F811
    t = await voting(svc, auth, secret=False)
    url = f"/services/v1/topics/{t['id']}/vote/ballots"
    for n, option in ((1, "同意"), (2, "反对")):
        r = await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=resident(auth, n), json={"option": option})
        assert r.status_code == 200, r.text
    r = await svc.get(url, headers=staff(auth))
    assert (r.status_code, r.json()["code"]) == (409, "vote.not_closed")        # not while others still vote
    svc.app.state.clock.advance(days=3, minutes=1)
    assert (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).status_code == 200
    for who in (staff(auth), resident(auth, 3)):                                # staff, and a resident of the scope
        r = await svc.get(url, headers=who)
        assert r.status_code == 200, r.text
        assert sorted((b["person_id"], b["option"], b["revision"]) for b in r.json()) == [
            ("p-1", "同意", 1), ("p-2", "反对", 1)]
    assert (await svc.get(url, headers=resident(auth, 90))).status_code == 404   # outside the scope: no such topic

    secret = await voting(svc, auth)
    r = await svc.get(f"/services/v1/topics/{secret['id']}/vote/ballots", headers=staff(auth))
    assert (r.status_code, r.json()["code"]) == (403, "vote.secret")


async def test_a_ballot_of_a_voter_gone_before_close_is_set_aside_not_counted(svc, auth):  # noqa: F811
    """p-3 moves to another community and p-4 leaves the register after voting; p-7 moves in and votes. At close
    the electorate is the replica's then: p-3's and p-4's ballots stay hashed and listed as set aside, the count
    is of those still eligible, so cast never exceeds eligible; the tally verifies, also against an edit of a
    set-aside ballot."""
    ops = auth(role="ops", user="ops1")
    t = await voting(svc, auth, secret=False)
    ballots = f"/services/v1/topics/{t['id']}/ballots"
    receipts = {}
    for n, option in ((1, "同意"), (2, "同意"), (3, "反对"), (4, "反对")):
        r = await svc.post(ballots, headers=resident(auth, n), json={"option": option})
        assert r.status_code == 200, r.text
        receipts[n] = r.json()["receipt"]
    r = await svc.put("/services/v1/deliberation/electors/p-3", headers=ops,
                      json={"building_code": OTHER, "household_id": "h-moved", "household_head": True,
                            "birth_date": "1980-01-01"})
    assert r.status_code == 200, r.text
    assert (await svc.delete("/services/v1/deliberation/electors/p-4", headers=ops)).status_code == 204
    await electors(svc, auth, 1, first=7)
    assert (await svc.post(ballots, headers=resident(auth, 7), json={"option": "反对"})).status_code == 200
    svc.app.state.clock.advance(days=3, minutes=1)
    v = (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).json()
    res = v["result"]
    assert (res["eligible"], res["cast"], res["counts"]) == (5, 3, {"同意": 2, "反对": 1, "弃权": 0})  # p-1,2,5,6,7
    assert sorted(res["set_aside"]) == sorted([receipts[3], receipts[4]]) and receipts[1] in res["receipts"]
    detail = (await svc.get(f"/services/v1/topics/{t['id']}", headers=staff(auth))).json()
    assert "2 票不计" in detail["timeline"][-1]["note"]
    named = (await svc.get(f"/services/v1/topics/{t['id']}/vote/ballots", headers=staff(auth))).json()
    assert sorted((b["person_id"], b["counted"]) for b in named) == [
        ("p-1", True), ("p-2", True), ("p-3", False), ("p-4", False), ("p-7", True)]
    verify = f"/services/v1/topics/{t['id']}/vote/verify"
    assert (await svc.get(verify, headers=staff(auth))).json() == {"ok": True, "ballots": 3,
                                                                   "tally_hash": v["tally_hash"], "reason": None}
    async with svc.app.state.db.session() as s, s.begin():   # a set-aside ballot edited in the database
        await s.execute(update(Ballot).where(Ballot.person_id == "p-3").values(option="同意"))
    bad = (await svc.get(verify, headers=staff(auth))).json()
    assert not bad["ok"] and "set-aside" in bad["reason"]


async def test_one_per_household_counts_a_household_still_in_the_scope(svc, auth):  # noqa: F811
    """One per household: the household's ballot counts while the household is in the scope at close, whoever
    of it cast it; a household gone from the scope (its only member moved) is set aside."""
    await electors(svc, auth, 2, first=20, per_household=2)    # p-20 (head) and p-21 join p-1's household h-…-0
    t = await voting(svc, auth, eligibility="household")
    ballots = f"/services/v1/topics/{t['id']}/ballots"
    for n in (20, 2):   # p-2 is alone in household h-…-1
        assert (await svc.post(ballots, headers=resident(auth, n), json={"option": "同意"})).status_code == 200
    ops = auth(role="ops", user="ops1")
    for pid in ("p-20", "p-2"):
        r = await svc.put(f"/services/v1/deliberation/electors/{pid}", headers=ops,
                          json={"building_code": OTHER, "household_id": f"h-new-{pid}", "birth_date": "1980-01-01"})
        assert r.status_code == 200, r.text
    svc.app.state.clock.advance(days=3, minutes=1)
    res = (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).json()["result"]
    # households of p-1 and p-21 (p-20 cast its ballot), p-3, p-4, p-5, p-6; p-2's has left the building
    assert (res["eligible"], res["cast"], len(res["set_aside"])) == (5, 1, 1)


async def test_household_heads_vote_with_quorum_and_two_thirds(svc, auth):  # noqa: F811
    """物业: household heads vote (a member who is not the head is refused), two thirds of the heads taking part
    (《民法典》第二百七十八条), two thirds of those cast (a rule stricter than the article's majority): too few
    voters fail the quorum; 3 of 5 is a majority but not two thirds; 4 of 5 passes."""
    await electors(svc, auth, 2, first=30, per_household=2)   # p-30 heads a household, p-31 does not
    now = svc.app.state.clock.now()

    async def vote(ayes: int, noes: int) -> dict:
        t = await open_topic(svc, auth, category="property", title=f"续聘物业 {ayes}:{noes}")
        r = await svc.post(f"/services/v1/topics/{t['id']}/vote", headers=staff(auth), json={
            "options": ["同意", "反对"], "eligibility": "household_head", "rule": "two_thirds", "quorum_rule": "two_thirds",
            "opens_at": now.isoformat(), "closes_at": (now + timedelta(days=3)).isoformat()})
        assert r.status_code == 201, r.text
        ballots = f"/services/v1/topics/{t['id']}/ballots"
        r = await svc.post(ballots, headers=resident(auth, 31), json={"option": "同意"})
        assert (r.status_code, r.json()["code"]) == (403, "vote.not_household_head")
        for n, option in enumerate(["同意"] * ayes + ["反对"] * noes, start=1):
            assert (await svc.post(ballots, headers=resident(auth, n), json={"option": option})).status_code == 200
        return t

    topics = [await vote(2, 1), await vote(3, 2), await vote(4, 1)]
    svc.app.state.clock.advance(days=3, minutes=1)
    got = []
    for t in topics:
        res = (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))).json()["result"]
        stage = (await svc.get(f"/services/v1/topics/{t['id']}", headers=staff(auth))).json()["stage"]
        got.append((res["eligible"], res["cast"], res["quorum_met"], res["passed"], stage))
    assert got == [(7, 3, False, False, "rejected"), (7, 5, True, False, "rejected"), (7, 5, True, True, "passed")]


async def test_a_vote_is_counted_at_its_closing_time_by_the_scan(svc, auth):  # noqa: F811
    """Nobody has to press close: the background scan (close_due, on the SLA scan's switch and interval) counts a
    vote once its closing time has passed, once; the result is frozen as a count by staff is."""
    from svc_services.deliberation.votes import close_due

    t = await voting(svc, auth)
    r = await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=resident(auth, 1), json={"option": "同意"})
    assert r.status_code == 200, r.text
    db, clock = svc.app.state.db, svc.app.state.clock
    assert await close_due(db, clock.now()) == 0            # still open
    clock.advance(days=3)
    assert (await close_due(db, clock.now()), await close_due(db, clock.now())) == (1, 0)
    v = (await svc.get(f"/services/v1/topics/{t['id']}/vote", headers=staff(auth))).json()
    assert (v["status"], v["result"]["cast"], v["result"]["eligible"], v["result"]["quorum_met"]) == (
        "closed", 1, 6, False)
    detail = (await svc.get(f"/services/v1/topics/{t['id']}", headers=staff(auth))).json()
    assert (detail["stage"], detail["timeline"][-1]["actor"]) == ("rejected", "system:tally")
    again = await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff(auth))
    assert (again.status_code, again.json()["code"]) == (409, "vote.already_closed")
