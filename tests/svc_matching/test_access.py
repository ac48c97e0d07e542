"""Who reaches what in svc_matching (svc_matching/access.py), written from the policy: staff act within their
places, a resident on their own, departments, member systems and evaluators on no personal record (no exchange
grant covers one); an object out of reach answers as an unknown one; only persons of the register get accounts.
(Issue 23: another community's time bank, reads without a grant, existence leaks, credits for nobody.)"""
from __future__ import annotations

from sqlalchemy import func, select

from tests.svc_matching.conftest import GRID_AK, GRID_XF, place_persons
from tests.svc_matching.test_offers import need_body, setup_world

XF, AK = GRID_XF[:12], GRID_AK[:12]
FEED = dict(role="system", user="svc_residents", member="svc_residents")


def credit_body(person="p-1", amount=30, pid="c-1", community=XF):
    return {"posting_id": pid, "person_id": person, "community": community, "unit": "point", "amount": amount,
            "memo": "参加居民议事会"}


async def _count(client, model, *where) -> int:
    async with client.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar()


async def _funded_account(client, staff, person="p-1", amount=30) -> dict:
    r = await client.post("/matching/v1/timebank/credits", headers=staff, json=credit_body(person, amount))
    assert r.status_code == 201, r.text
    return next(e for e in r.json()["entries"] if e["amount"] > 0)


async def _matched_world(client, staff):
    """A 幸福 need offered to a service of the directory, and the volunteer p-5 of 幸福."""
    w = await setup_world(client, staff)
    need = (await client.post("/matching/v1/needs", headers=staff, json=need_body())).json()
    r = await client.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)
    assert r.status_code == 201 and r.json()["offer"], r.text
    return {**w, "need": need, "offer": r.json()["offer"]}


async def test_staff_of_another_community_neither_read_nor_redeem_a_residents_points(client, staff, auth):
    entry = await _funded_account(client, staff)           # p-1 lives in 幸福
    acc = entry["account_id"]
    ops = auth(role="ops")
    elsewhere = [auth(role="community_staff", scopes=[f"community:{AK}"]),
                 auth(role="street_staff", scopes=["street:110105002"]),
                 auth(role="grid_worker", scopes=[f"grid:{GRID_AK}"])]
    for who in elsewhere:
        assert (await client.get(f"/matching/v1/timebank/accounts/{acc}", headers=who)).status_code == 404
        assert (await client.get(f"/matching/v1/timebank/accounts/{acc}/statement", headers=who)).status_code == 404
        r = await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-1"}, headers=who)
        assert r.status_code == 200 and r.json() == [], r.text
    # 安康's staff redeeming at 安康 from the 幸福 resident's account: as if it did not exist, nothing spent
    r = await client.post("/matching/v1/timebank/redemptions", headers=elsewhere[0], json={
        "posting_id": "steal-1", "account_id": acc, "community": AK, "amount": 10, "memo": "兑换"})
    assert r.status_code == 404, r.text
    assert r.json()["errors"][0]["field"] == "account_id"
    assert (await client.get(f"/matching/v1/timebank/accounts/{acc}", headers=ops)).json()["balance"] == 30
    # within the places: the grid worker of the grid reads, the community's staff and the street's redeem
    grid = auth(role="grid_worker", scopes=[f"grid:{GRID_XF}"])
    assert (await client.get(f"/matching/v1/timebank/accounts/{acc}", headers=grid)).status_code == 200
    street = auth(role="street_staff", scopes=["street:110105001"])
    for i, who in enumerate((staff, street)):
        r = await client.post("/matching/v1/timebank/redemptions", headers=who, json={
            "posting_id": f"redeem-{i}", "account_id": acc, "community": XF, "amount": 5})
        assert r.status_code == 201, r.text
    assert (await client.get(f"/matching/v1/timebank/accounts/{acc}", headers=ops)).json()["balance"] == 20


async def test_a_communitys_ledger_accounts_are_its_staffs(client, staff, auth):
    r = await client.post("/matching/v1/timebank/credits", headers=staff, json=credit_body())
    issuance = next(e["account_id"] for e in r.json()["entries"] if e["amount"] < 0)
    assert (await client.get(f"/matching/v1/timebank/accounts/{issuance}", headers=staff)).status_code == 200
    for who in (auth(role="community_staff", scopes=[f"community:{AK}"]), auth(role="evaluator"),
                auth(role="resident", scopes=["person:p-1"])):
        assert (await client.get(f"/matching/v1/timebank/accounts/{issuance}", headers=who)).status_code == 404


async def test_a_credit_for_a_person_who_does_not_exist_is_refused(client, staff, auth):
    from svc_matching.models import Account, OutboxEvent, Volunteer

    events = await _count(client, OutboxEvent)
    for who in (staff, auth(role="ops")):
        r = await client.post("/matching/v1/timebank/credits", headers=who, json=credit_body("nobody"))
        assert r.status_code == 422, r.text
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("person_id", "ledger.person_unknown")]
    # a resident of 幸福 credited by 安康's staff from 安康's points: the same answer as for nobody
    r2 = await client.post("/matching/v1/timebank/credits", headers=auth(role="community_staff",
                                                                         scopes=[f"community:{AK}"]),
                           json=credit_body("p-1", community=AK))
    assert r2.status_code == 422 and r2.json()["errors"] == r.json()["errors"], r2.text
    # a volunteer record (and its account) for nobody neither
    r = await client.post("/matching/v1/volunteers", headers=staff, json={
        "person_id": "nobody", "name": "无此人", "skills": ["life_service"], "max_load": 1,
        "latitude": 39.921, "longitude": 116.443, "place_code": GRID_XF})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "person_id", r.text
    assert await _count(client, Account, Account.owner_kind == "person") == 0
    assert await _count(client, Account) == 0 and await _count(client, Volunteer) == 0
    assert await _count(client, OutboxEvent) == events


async def test_a_person_who_left_the_register_gets_no_more_credits(client, staff, auth):
    await _funded_account(client, staff, "p-3", 5)
    feed = auth(**FEED)
    assert (await client.delete("/matching/v1/person_places/p-3", params={"version": 7},
                                headers=feed)).status_code == 204
    r = await client.post("/matching/v1/timebank/credits", headers=staff, json=credit_body("p-3", pid="c-2"))
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "ledger.person_unknown", r.text
    # an older snapshot arriving late does not bring them back
    r = await client.put("/matching/v1/person_places/p-3", headers=feed,
                         json={"grid_code": GRID_XF, "community_code": XF, "version": 6})
    assert r.status_code == 200 and r.json()["removed"] is True, r.text
    assert (await client.get("/matching/v1/person_places/p-3", headers=feed)).status_code == 404


async def test_the_accounts_query_does_not_tell_whether_a_person_has_accounts(client, staff, auth):
    await _funded_account(client, staff, "p-1")               # p-2 has none; "nobody" does not exist
    resident = auth(role="resident", scopes=["person:p-3"])
    answers = [await client.get("/matching/v1/timebank/accounts", params={"person_id": p}, headers=resident)
               for p in ("p-1", "p-2", "nobody")]
    assert {(r.status_code, r.json()["code"]) for r in answers} == {(403, "forbidden")}
    other = auth(role="community_staff", scopes=[f"community:{AK}"])
    for p in ("p-1", "p-2", "nobody"):
        r = await client.get("/matching/v1/timebank/accounts", params={"person_id": p}, headers=other)
        assert (r.status_code, r.json()) == (200, []), (p, r.text)
    mine = (await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-1"}, headers=staff)).json()
    assert [a["balance"] for a in mine] == [30]


async def test_objects_of_another_community_answer_like_unknown_ones(client, staff, auth):
    from svc_matching.models import Posting

    w = await _matched_world(client, staff)
    r = await client.post(f"/matching/v1/offers/{w['offer']['id']}/accept", headers=staff)
    assert r.status_code == 200, r.text
    acc = (await _funded_account(client, staff))["account_id"]
    other = auth(role="community_staff", scopes=[f"community:{AK}"])
    calls = [("GET", "/matching/v1/needs/{}", w["need"]["id"]),
             ("POST", "/matching/v1/needs/{}/candidates", w["need"]["id"]),
             ("POST", "/matching/v1/needs/{}/match", w["need"]["id"]),
             ("GET", "/matching/v1/offers/{}", w["offer"]["id"]),
             ("POST", "/matching/v1/offers/{}/accept", w["offer"]["id"]),
             ("POST", "/matching/v1/offers/{}/decline", w["offer"]["id"]),
             ("POST", "/matching/v1/offers/{}/complete", w["offer"]["id"]),
             ("GET", "/matching/v1/timebank/accounts/{}", acc),
             ("GET", "/matching/v1/timebank/accounts/{}/statement", acc)]
    postings = await _count(client, Posting)
    for method, path, oid in calls:
        json = {"hours": 2} if path.endswith("complete") else None
        theirs = await client.request(method, path.format(oid), headers=other, json=json)
        unknown = await client.request(method, path.format("no-such-id"), headers=other, json=json)
        assert theirs.status_code == unknown.status_code == 404, (path, theirs.text)
        assert theirs.json()["code"] == unknown.json()["code"], path
    assert await _count(client, Posting) == postings            # nothing completed or credited by 安康
    r = await client.get(f"/matching/v1/offers/{w['offer']['id']}", headers=staff)
    assert r.json()["status"] == "accepted"


async def test_lists_hold_only_the_callers_places(client, staff, auth):
    w = await _matched_world(client, staff)
    other = auth(role="community_staff", scopes=[f"community:{AK}"])
    assert (await client.get("/matching/v1/offers", headers=other)).json()["items"] == []
    assert (await client.get("/matching/v1/needs", headers=other)).json()["items"] == []
    assert [o["id"] for o in (await client.get("/matching/v1/offers", headers=staff)).json()["items"]] \
        == [w["offer"]["id"]]


async def test_departments_member_systems_and_evaluators_reach_no_personal_record(client, staff, auth):
    w = await _matched_world(client, staff)
    open_need = (await client.post("/matching/v1/needs", headers=staff, json=need_body(person_id="p-4"))).json()
    acc = (await _funded_account(client, staff))["account_id"]
    for who in (auth(role="dept_staff", scopes=["dept:minzheng"], member="dept-minzheng"),
                auth(role="system", member="portal"), auth(role="evaluator", scopes=["district:110105"])):
        for path in ("/matching/v1/needs", "/matching/v1/offers"):
            assert (await client.get(path, headers=who)).status_code == 403, path
        for path in (f"/matching/v1/needs/{w['need']['id']}", f"/matching/v1/offers/{w['offer']['id']}",
                     f"/matching/v1/volunteers/{w['vol']['id']}", f"/matching/v1/timebank/accounts/{acc}"):
            assert (await client.get(path, headers=who)).status_code == 404, path
        r = await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-1"}, headers=who)
        assert r.status_code == 403
        for path in (f"/matching/v1/needs/{open_need['id']}/candidates", f"/matching/v1/needs/{open_need['id']}/match",
                     "/matching/v1/match/batch"):
            r = await client.post(path, headers=who, json={"need_ids": [open_need["id"]]} if "batch" in path else None)
            assert r.status_code == 403, (path, r.text)
        r = await client.post("/matching/v1/needs", headers=who, json=need_body(person_id="p-6"))
        assert r.status_code == 403, r.text   # nor write into a community's needs list
    assert (await client.get(f"/matching/v1/needs/{open_need['id']}", headers=staff)).json()["status"] == "open"
    # what departments do have: the public directory
    dept = auth(role="dept_staff", scopes=["dept:minzheng"])
    assert (await client.get("/matching/v1/hsds/services", headers=dept)).json()["total_items"] == 2


async def test_ledger_transfers_stay_within_the_callers_places(client, staff, auth):
    a = (await _funded_account(client, staff, "p-1", 10))["account_id"]
    await place_persons(client, {"ak-1": GRID_AK})
    ak_staff = auth(role="community_staff", scopes=[f"community:{AK}"])
    r = await client.post("/matching/v1/timebank/credits", headers=ak_staff,
                          json=credit_body("ak-1", 1, pid="c-ak", community=AK))
    assert r.status_code == 201, r.text
    b = next(e["account_id"] for e in r.json()["entries"] if e["amount"] > 0)
    body = {"posting_id": "t-1", "unit": "point", "entries": [{"account_id": a, "amount": -3},
                                                              {"account_id": b, "amount": 3}]}
    another_street = auth(role="street_staff", scopes=["street:110105002"])
    r = await client.post("/matching/v1/timebank/postings", headers=another_street, json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "entries.0.account_id", r.text
    for who in (auth(role="system", member="portal"), auth(role="community_staff", scopes=[f"community:{XF}"])):
        assert (await client.post("/matching/v1/timebank/postings", headers=who, json=body)).status_code == 403
    street = auth(role="street_staff", scopes=["street:110105001"])
    assert (await client.post("/matching/v1/timebank/postings", headers=street, json=body)).status_code == 201


async def test_only_the_residents_registry_keeps_the_person_places(client, auth):
    body = {"grid_code": GRID_AK, "community_code": AK, "version": 3}
    for who in (auth(role="system", member="portal"), auth(role="dept_staff", scopes=["dept:gongan"]),
                auth(role="community_staff", scopes=[f"community:{AK}"])):
        assert (await client.put("/matching/v1/person_places/ak-9", headers=who, json=body)).status_code == 403
    feed = auth(**FEED)
    r = await client.put("/matching/v1/person_places/ak-9", headers=feed, json=body)
    assert r.status_code == 200 and r.json()["version"] == 3, r.text
    stale = await client.put("/matching/v1/person_places/ak-9", headers=feed,
                             json={**body, "grid_code": GRID_XF, "community_code": XF, "version": 2})
    assert stale.status_code == 200 and stale.json()["grid_code"] == GRID_AK      # an older snapshot changes nothing
    for bad, field in (({**body, "grid_code": GRID_XF}, "grid_code"), ({**body, "name": "张三"}, "name"),
                       ({**body, "community_code": "1101"}, "community_code")):
        r = await client.put("/matching/v1/person_places/ak-9", headers=feed, json=bad)
        assert r.status_code == 422 and field in r.json()["errors"][0]["field"], r.text
    # the person moved to 幸福 (a newer snapshot): 幸福's staff now see them, 安康's no longer
    r = await client.put("/matching/v1/person_places/ak-9", headers=feed,
                         json={"grid_code": GRID_XF, "community_code": XF, "version": 4})
    assert r.json()["grid_code"] == GRID_XF
    xf = auth(role="community_staff", scopes=[f"community:{XF}"])
    r = await client.post("/matching/v1/timebank/credits", headers=xf, json=credit_body("ak-9"))
    assert r.status_code == 201, r.text
    acc = next(e["account_id"] for e in r.json()["entries"] if e["amount"] > 0)
    ak = auth(role="community_staff", scopes=[f"community:{AK}"])
    assert (await client.get(f"/matching/v1/timebank/accounts/{acc}", headers=ak)).status_code == 404
