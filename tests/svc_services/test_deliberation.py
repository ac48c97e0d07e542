"""Resident deliberation (issue 28) in svc_services: proposals gathering co-signers to the community's threshold,
the stage table, moderated discussion with proxies, meetings, votes (eligibility by scope and household, one
ballot per voter, changes until close, the frozen tally and its verification), resolutions with tasks, and the
bad input of the issue: each a clear problem with nothing written."""
from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from common.clock import FrozenClock
from svc_services.base import OutboxEvent
from svc_services.deliberation import lifecycle
from svc_services.deliberation.models import Ballot, Comment, Cosign, Elector, Topic, Vote

XF, AK = "110105001001", "110105001002"
GRID = XF + "001"
BUILDING = GRID + "001"
OTHER = AK + "001001"
START = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)


def resident(auth, n: int):
    return auth(role="resident", scopes=[f"person:p-{n}"], user=f"u-p{n}")


async def electors(c, auth, n: int, *, building=BUILDING, first=1, per_household=1, age_years=40):
    ops = auth(role="ops", user="ops1")
    born = (START - timedelta(days=365 * age_years)).date().isoformat()
    for i in range(first, first + n):
        hh = (i - first) // per_household
        r = await c.put(f"/services/v1/deliberation/electors/p-{i}", headers=ops, json={
            "building_code": building, "household_id": f"h-{building[-4:]}-{hh}", "birth_date": born,
            "household_head": (i - first) % per_household == 0})
        assert r.status_code == 200, r.text


async def counts(c) -> tuple[int, ...]:
    async with c.app.state.db.session() as s:
        return tuple([(await s.execute(select(func.count()).select_from(m))).scalar_one()
                      for m in (Topic, Cosign, Comment, Ballot, OutboxEvent)])


@pytest.fixture
async def svc(service_client, auth):
    c = await service_client("svc_services", sla_scan_enabled=False)
    c.app.state.clock = FrozenClock(START)
    await electors(c, auth, 6)
    await electors(c, auth, 2, building=OTHER, first=90)
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    r = await c.put(f"/services/v1/deliberation/policies/{XF}", headers=staff, json={"cosign_threshold": 2})
    assert r.status_code == 200, r.text
    return c


def topic_body(**over):
    return {"title": "3号楼加装电梯", "description": "三号楼老人多，提议加装电梯。", "category": "facilities",
            "scope_kind": "building", "scope_code": BUILDING, **over}


async def open_topic(c, auth, **over) -> dict:
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    r = await c.post("/services/v1/topics", headers=staff, json=topic_body(source="staff", **over))
    assert r.status_code == 201, r.text
    return r.json()


async def voting(c, auth, **vote) -> dict:
    t = await open_topic(c, auth, scope_kind="building")
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    now = c.app.state.clock.now()
    r = await c.post(f"/services/v1/topics/{t['id']}/vote", headers=staff, json={
        "options": ["同意", "反对", "弃权"], "eligibility": "adult", "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(days=3)).isoformat(), **vote})
    assert r.status_code == 201, r.text
    return t


def test_the_stage_table_is_closed_and_replays():
    for (stage, _a), rule in lifecycle.TRANSITIONS.items():
        assert stage not in lifecycle.TERMINAL and rule.to in lifecycle.STAGES
    path = [("create", None, "proposed"), ("accept", "proposed", "open"), ("convene", "open", "meeting"),
            ("call_vote", "meeting", "voting"), ("pass", "voting", "passed"), ("resolve", "passed", "resolution"),
            ("complete", "resolution", "executed")]
    assert lifecycle.replay(path) == "executed"
    with pytest.raises(ValueError):
        lifecycle.replay([("create", None, "proposed"), ("pass", "proposed", "passed")])


async def test_a_proposal_becomes_a_topic_at_the_communitys_threshold(svc, auth):
    r = await svc.post("/services/v1/topics", headers=resident(auth, 1), json=topic_body())
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["stage"], t["cosign_threshold"], t["allowed_actions"]) == ("proposed", 2, ["withdraw"])
    before = await counts(svc)
    for who, want, code in ((1, 409, "topic.own_proposal"), (90, 404, None)):
        r = await svc.post(f"/services/v1/topics/{t['id']}/cosigns", headers=resident(auth, who))
        assert r.status_code == want, r.text
        assert code is None or r.json()["code"] == code
    assert await counts(svc) == before
    assert (await svc.post(f"/services/v1/topics/{t['id']}/cosigns", headers=resident(auth, 2))).json()["stage"] \
        == "proposed"
    again = await svc.post(f"/services/v1/topics/{t['id']}/cosigns", headers=resident(auth, 2))
    assert (again.status_code, again.json()["code"]) == (409, "topic.already_cosigned")
    proxy = auth(role="proxy", scopes=[f"community:{XF}"], user="proxy1", acting_for="p-3")
    done = (await svc.post(f"/services/v1/topics/{t['id']}/cosigns", headers=proxy)).json()
    assert (done["stage"], done["cosigns"]) == ("open", 2)
    assert [e["action"] for e in done["timeline"]] == ["create", "accept"]
    assert done["timeline"][-1]["actor"] == "system:cosign_threshold"


async def test_bad_proposals_are_refused_and_nothing_is_written(svc, auth):
    before = await counts(svc)
    body = topic_body()
    del body["scope_code"]
    r = await svc.post("/services/v1/topics", headers=resident(auth, 1), json=body)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].endswith("scope_code") for e in r.json()["errors"])
    r = await svc.post("/services/v1/topics", headers=resident(auth, 1), json=topic_body(scope_code=OTHER))
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "scope_code")
    r = await svc.post("/services/v1/topics", headers=resident(auth, 1), json=topic_body(scope_code=XF))
    assert r.json()["errors"][0]["code"] == "topic.scope_mismatch"   # a community code for a building scope
    r = await svc.post("/services/v1/topics", headers=resident(auth, 1), json=topic_body(source="staff"))
    assert r.status_code == 403
    assert await counts(svc) == before


async def test_discussion_is_moderated_and_closes_with_the_topic(svc, auth):
    t = await open_topic(svc, auth)
    proxy = auth(role="proxy", scopes=[f"community:{XF}"], user="proxy1", acting_for="p-3")
    r = await svc.post(f"/services/v1/topics/{t['id']}/comments", headers=proxy, json={"text": "同意，替王阿姨说一句"})
    assert r.status_code == 201, r.text
    async with svc.app.state.db.session() as s:   # the comment is the person's, written by their proxy
        c = await s.get(Comment, r.json()["id"])
        assert (c.person_id, c.author, c.author_role) == ("p-3", "app-test/proxy1", "proxy")
    rude = (await svc.post(f"/services/v1/topics/{t['id']}/comments", headers=resident(auth, 2),
                           json={"text": "不文明的话"})).json()
    before = await counts(svc)
    r = await svc.post(f"/services/v1/topics/{t['id']}/comments", headers=resident(auth, 90), json={"text": "路过"})
    assert r.status_code == 404  # outside the scope: the topic is out of reach
    assert await counts(svc) == before
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    r = await svc.post(f"/services/v1/topics/{t['id']}/comments/{rude['id']}/hide", headers=staff,
                       json={"reason": "含不文明用语"})
    assert r.status_code == 200 and r.json()["hidden"]
    seen = (await svc.get(f"/services/v1/topics/{t['id']}/comments", headers=resident(auth, 1))).json()
    assert [(c["hidden"], c["text"]) for c in seen] == [(False, "同意，替王阿姨说一句"), (True, None)]
    assert seen[1]["hidden_reason"] == "含不文明用语"
    assert (await svc.get(f"/services/v1/topics/{t['id']}/comments", headers=staff)).json()[1]["text"] == "不文明的话"
    r = await svc.post(f"/services/v1/topics/{t['id']}/transitions", headers=staff,
                       json={"action": "decline", "version": t["version"], "note": "已由物业解决"})
    assert r.json()["stage"] == "closed"
    before = await counts(svc)
    r = await svc.post(f"/services/v1/topics/{t['id']}/comments", headers=resident(auth, 1), json={"text": "还有"})
    assert (r.status_code, r.json()["code"]) == (409, "topic.discussion_closed")
    assert await counts(svc) == before


async def test_a_meeting_records_attendance_and_minutes(svc, auth):
    t = await open_topic(svc, auth)
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    at = svc.app.state.clock.now() + timedelta(days=1)
    r = await svc.post(f"/services/v1/topics/{t['id']}/meetings", headers=staff, json={
        "starts_at": at.isoformat(), "place": "幸福社区议事厅", "members": [
            {"kind": "resident_rep", "ref": "p-1"}, {"kind": "grid_worker", "ref": "grid1"},
            {"kind": "property", "ref": "wy-01", "name": "幸福物业"}, {"kind": "department", "ref": "zhujian"}]})
    assert r.status_code == 201, r.text
    m = r.json()
    dept = auth(role="dept_staff", scopes=["dept:zhujian"], user="zj1")
    assert (await svc.get(f"/services/v1/topics/{t['id']}", headers=dept)).json()["stage"] == "meeting"  # 吹哨报到
    assert (await svc.get(f"/services/v1/topics/{t['id']}", headers=auth(role="dept_staff", scopes=["dept:x"]))
            ).status_code == 404
    early = await svc.post(f"/services/v1/topics/{t['id']}/meetings/{m['id']}/record", headers=staff,
                           json={"attended": ["p-1"], "minutes": "……"})
    assert early.status_code == 409
    svc.app.state.clock.advance(days=1, hours=2)
    r = await svc.post(f"/services/v1/topics/{t['id']}/meetings/{m['id']}/record", headers=staff,
                       json={"attended": ["p-1", "zhujian", "nobody"], "minutes": "一致同意启动表决"})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "attended")
    r = await svc.post(f"/services/v1/topics/{t['id']}/meetings/{m['id']}/record", headers=staff,
                       json={"attended": ["p-1", "zhujian"], "minutes": "一致同意启动表决"})
    assert [x["attended"] for x in r.json()["members"]] == [True, False, False, True]


async def test_a_comment_or_meeting_of_another_topic_is_not_found_under_this_one(svc, auth):
    """A comment or meeting id that exists answers 404 under any topic but its own, exactly as an unknown id,
    and nothing is changed: moderation and minutes reach only the topic's own children."""
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    mine, other = await open_topic(svc, auth), await open_topic(svc, auth, title="小区停车位规划")
    comment = (await svc.post(f"/services/v1/topics/{mine['id']}/comments", headers=resident(auth, 1),
                              json={"text": "赞成"})).json()
    r = await svc.post(f"/services/v1/topics/{mine['id']}/meetings", headers=staff, json={
        "starts_at": (svc.app.state.clock.now() + timedelta(days=1)).isoformat(), "place": "幸福社区议事厅",
        "members": [{"kind": "resident_rep", "ref": "p-1"}]})
    assert r.status_code == 201, r.text
    meeting = r.json()
    svc.app.state.clock.advance(days=1, hours=2)  # held: only the topic can make it unknown
    before = await counts(svc)
    r = await svc.post(f"/services/v1/topics/{other['id']}/comments/{comment['id']}/hide", headers=staff,
                       json={"reason": "含不文明用语"})
    assert (r.status_code, r.json()["code"]) == (404, "comment.not_found")
    r = await svc.post(f"/services/v1/topics/{other['id']}/meetings/{meeting['id']}/record", headers=staff,
                       json={"attended": ["p-1"], "minutes": "一致同意"})
    assert (r.status_code, r.json()["code"]) == (404, "meeting.not_found")
    assert await counts(svc) == before
    seen = (await svc.get(f"/services/v1/topics/{mine['id']}/comments", headers=staff)).json()
    assert [c["hidden"] for c in seen] == [False]
    # under their own topic the same ids are found
    r = await svc.post(f"/services/v1/topics/{mine['id']}/comments/{comment['id']}/hide", headers=staff,
                       json={"reason": "含不文明用语"})
    assert r.status_code == 200 and r.json()["hidden"]
    r = await svc.post(f"/services/v1/topics/{mine['id']}/meetings/{meeting['id']}/record", headers=staff,
                       json={"attended": ["p-1"], "minutes": "一致同意"})
    assert r.status_code == 200, r.text


async def test_ballots_eligibility_close_and_a_verified_tally(svc, auth):
    await electors(svc, auth, 2, first=50, age_years=10)   # children of the building: not adults
    t = await voting(svc, auth)
    tid = t["id"]
    before = await counts(svc)
    for who, want, code in ((90, 404, None), (50, 403, "vote.not_adult")):
        r = await svc.post(f"/services/v1/topics/{tid}/ballots", headers=resident(auth, who), json={"option": "同意"})
        assert r.status_code == want and (code is None or r.json()["code"] == code), r.text
    r = await svc.post(f"/services/v1/topics/{tid}/ballots", headers=resident(auth, 1), json={"option": "也许"})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "option")
    assert await counts(svc) == before
    for who, option in ((1, "同意"), (2, "同意"), (3, "同意"), (4, "反对")):
        r = await svc.post(f"/services/v1/topics/{tid}/ballots", headers=resident(auth, who), json={"option": option})
        assert r.status_code == 200, r.text
    before = await counts(svc)
    second = await svc.post(f"/services/v1/topics/{tid}/ballots", headers=resident(auth, 4), json={"option": "同意"})
    assert (second.status_code, second.json()["code"]) == (409, "ballot.duplicate")
    assert await counts(svc) == before
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    early = await svc.post(f"/services/v1/topics/{tid}/vote/close", headers=staff)
    assert (early.status_code, early.json()["code"]) == (409, "vote.not_due")
    svc.app.state.clock.advance(days=3)
    late = await svc.post(f"/services/v1/topics/{tid}/ballots", headers=resident(auth, 5), json={"option": "同意"})
    assert (late.status_code, late.json()["code"]) == (409, "vote.closed")
    assert await counts(svc) == before
    v = (await svc.post(f"/services/v1/topics/{tid}/vote/close", headers=staff)).json()
    assert v["result"]["counts"] == {"同意": 3, "反对": 1, "弃权": 0}
    assert (v["result"]["eligible"], v["result"]["cast"], v["result"]["passed"]) == (6, 4, True)
    assert (await svc.get(f"/services/v1/topics/{tid}", headers=staff)).json()["stage"] == "passed"
    assert (await svc.get(f"/services/v1/topics/{tid}/vote/verify", headers=resident(auth, 1))).json()["ok"]
    again = await svc.post(f"/services/v1/topics/{tid}/vote/close", headers=staff)
    assert again.status_code == 409   # frozen
    async with svc.app.state.db.session() as s, s.begin():   # someone edits a ballot in the database
        await s.execute(update(Ballot).where(Ballot.person_id == "p-4").values(option="同意"))
    bad = (await svc.get(f"/services/v1/topics/{tid}/vote/verify", headers=staff)).json()
    assert not bad["ok"] and "altered" in bad["reason"]
    from svc_services.cli import _verify   # `onenet deliberation verify`, on the database itself
    r = await _verify(svc.app.state.settings.database_url, tid)
    assert (r.ok, r.ballots) == (False, 4) and "altered" in r.reason


async def test_a_changeable_vote_keeps_one_ballot_per_household(svc, auth):
    await electors(svc, auth, 4, first=20, per_household=2)   # two households of two
    t = await voting(svc, auth, eligibility="household", changeable=True)
    first = await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=resident(auth, 20), json={"option": "反对"})
    changed = await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=resident(auth, 20), json={"option": "同意"})
    assert (first.json()["revision"], changed.json()["revision"], changed.json()["option"]) == (1, 2, "同意")
    other = await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=resident(auth, 21), json={"option": "反对"})
    assert (other.status_code, other.json()["code"]) == (409, "ballot.duplicate")   # the household has voted
    async with svc.app.state.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Ballot))).scalar_one() == 1


async def test_200_concurrent_ballots_from_100_voters_count_100(svc, auth):
    async with svc.app.state.db.session() as s, s.begin():   # 100 voters as the feed would write them, at once
        s.add_all([Elector(person_id=f"p-{i}", building_code=BUILDING, household_id=f"h-{i}", household_head=True,
                           birth_date=date(1980, 1, 1), removed=False, updated_at=START) for i in range(100, 200)])
    t = await voting(svc, auth, quorum_percent=10)
    heads = [resident(auth, 100 + i) for i in range(100)]

    async def cast(h, option):
        return (await svc.post(f"/services/v1/topics/{t['id']}/ballots", headers=h, json={"option": option})).status_code

    codes = await asyncio.gather(*[cast(h, o) for h in heads for o in ("同意", "反对")])
    assert sorted(set(codes)) == [200, 409] and codes.count(200) == 100
    svc.app.state.clock.advance(days=3)
    staff = auth(role="community_staff", scopes=[f"community:{XF}"], user="staff1")
    v = (await svc.post(f"/services/v1/topics/{t['id']}/vote/close", headers=staff)).json()
    assert v["result"]["cast"] == 100 and sum(v["result"]["counts"].values()) == 100
    async with svc.app.state.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Ballot))).scalar_one() == 100
        vote = (await s.execute(select(Vote))).scalar_one()
        assert len(vote.result["receipts"]) == 100
