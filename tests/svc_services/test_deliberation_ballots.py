"""记名投票 (issue 28): a named vote's ballots (who chose what) are listed once counted, to whoever sees the topic;
before the count, or for a secret vote, nobody's choice is shown."""
from __future__ import annotations

from tests.svc_services.test_deliberation import XF, resident, svc, voting  # noqa: F401  (svc: the fixture)


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
