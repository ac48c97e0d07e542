"""Object-level checks (OWASP API1 BOLA) through the gateway: another resident's ids, another grid's and another
community's objects, a proxy acting beyond their person, and what a list returns to whom."""
from __future__ import annotations

from deploy.demo import demo_id, person_id

R1, R2 = demo_id("request", "R1"), demo_id("request", "R2")  # R1: P1 (resident1), grid A1; R2: P3 via proxy1
P1, P3 = person_id("P1"), person_id("P3")


def _get(pt, url, who, **kw):
    return pt.request("GET", url, headers=pt.platform.headers(who), **kw)


def test_requests_of_another_resident_grid_or_community_are_hidden(pt):
    got = {who: _get(pt, f"/services/v1/requests/{R1}", who).status_code
           for who in ("resident1", "resident3", "proxy1", "grid1", "grid3", "staff1", "staff2", "street1",
                       "provider1", "evaluator1")}
    assert got == {"resident1": 200, "resident3": 404, "proxy1": 404, "grid1": 200, "grid3": 404, "staff1": 200,
                   "staff2": 404, "street1": 200, "provider1": 404, "evaluator1": 404}, got
    for sub in ("timeline", "duplicates", "materials"):
        assert _get(pt, f"/services/v1/requests/{R1}/{sub}", "resident3").status_code == 404, sub
        assert _get(pt, f"/services/v1/requests/{R1}/{sub}", "staff2").status_code == 404, sub


def test_lists_return_only_ones_own(pt):
    for who, person in (("resident1", P1), ("resident3", P3), ("proxy1", P3)):
        r = _get(pt, "/services/v1/requests", who, params={"limit": 200})
        assert r.status_code == 200
        assert {x["person_id"] for x in r.json()["items"]} <= {person}, who
    r = _get(pt, "/services/v1/requests", "staff2", params={"limit": 200})
    assert all(not (x.get("grid") or "").startswith("110105001001") for x in r.json()["items"])


def test_proxy_acts_only_for_their_person(pt):
    assert _get(pt, f"/services/v1/requests/{R2}", "proxy1").status_code == 200
    body = {"item_code": "SH-WX-001", "channel": "app", "description": "代办：厨房水管漏水",
            "location": {"grid": "110105001001001"}, "attributes": {"appliance": "plumbing"}}
    r = pt.request("POST", "/services/v1/requests", headers=pt.platform.headers("proxy1"),
                   json={**body, "person_id": P1})
    assert r.status_code in (403, 422), r.text  # beyond their person: refused
    r = pt.request("POST", "/services/v1/requests", headers=pt.platform.headers("resident1"),
                   json={**body, "person_id": P3})
    assert r.status_code in (403, 422), r.text  # a resident cannot file for another person
    r = pt.request("POST", "/services/v1/requests", headers=pt.platform.headers("proxy1"), json=body)
    assert r.status_code == 201, r.text
    assert r.json()["person_id"] == P3


def test_staff_of_another_grid_or_community_cannot_move_a_request(pt):
    version = _get(pt, f"/services/v1/requests/{R1}", "ops1").json()["version"]
    for who in ("grid3", "staff2", "resident3", "provider1"):
        r = pt.request("POST", f"/services/v1/requests/{R1}/transitions", headers=pt.platform.headers(who),
                       json={"action": "start", "version": version})
        assert r.status_code in (403, 404), (who, r.status_code, r.text)
    assert _get(pt, f"/services/v1/requests/{R1}", "ops1").json()["version"] == version


def test_volunteer_records_are_personal(pt):
    vol = demo_id("volunteer", "P5")  # P5 lives in grid A2 of 幸福
    got = {who: _get(pt, f"/matching/v1/volunteers/{vol}", who).status_code
           for who in ("resident1", "proxy1", "grid1", "staff1", "staff2", "provider1", "ops1")}
    assert got == {"resident1": 404, "proxy1": 404, "grid1": 404, "staff1": 200, "staff2": 404,
                   "provider1": 404, "ops1": 200}, got


def test_metrics_scope_is_the_callers_own(pt):
    r = _get(pt, "/metrics/v1/warnings", "staff2", params={"scope": "110105001001"})
    assert r.status_code in (403, 404) or all(
        (w.get("scope") or w.get("community") or "110105001002").startswith("110105001002")
        for w in r.json()["items"]), r.text
    r = _get(pt, "/metrics/v1/warnings", "staff1", params={"scope": "110105001001"})
    assert r.status_code == 200, r.text


def test_matching_records_of_another_community_or_a_department_are_hidden(pt, ids):
    """幸福's need (resident1's), its offer, the volunteer P5 and P5's time-bank account: 幸福's staff see them;
    安康's staff and grid worker, a department (its staff or its member system), the evaluator and a kiosk get
    what an unknown id gets (404), and their lists hold none of them."""
    paths = ["/matching/v1/needs/{}", "/matching/v1/offers/{}", "/matching/v1/volunteers/{}",
             "/matching/v1/timebank/accounts/{}", "/matching/v1/timebank/accounts/{}/statement"]
    objects = [ids["need_id"], ids["offer_id"], ids["volunteer_id"], ids["account_id"], ids["account_id"]]
    outsiders = [("staff2", {}), ("grid3", {}), ("dept_mz", {}), ("dept_mz", {"member": "dept-minzheng"}),
                 ("evaluator1", {}), ("system", {})]
    for path, oid in zip(paths, objects):
        assert _get(pt, path.format(oid), "staff1").status_code == 200, path
        for who, over in outsiders:
            headers = pt.platform.headers(who, **over)
            theirs = pt.request("GET", path.format(oid), headers=headers)
            unknown = pt.request("GET", path.format("no-such-id"), headers=headers)
            assert theirs.status_code == unknown.status_code == 404, (path, who, over, theirs.text)
            assert theirs.json()["code"] == unknown.json()["code"], (path, who)
    for path in ("/matching/v1/needs", "/matching/v1/offers"):
        r = _get(pt, path, "staff2", params={"limit": 200})
        assert r.status_code == 200 and ids["need_id"] not in {x.get("need_id", x["id"]) for x in r.json()["items"]}
        for who, over in outsiders[2:]:
            assert pt.request("GET", path, headers=pt.platform.headers(who, **over)).status_code == 403, (path, who)


def test_another_communitys_time_bank_is_neither_read_nor_spent(pt, ids):
    P5 = person_id("P5")  # 幸福, the volunteer whose account the fixture funded
    r = _get(pt, "/matching/v1/timebank/accounts", "staff2", params={"person_id": P5})
    assert (r.status_code, r.json()) == (200, []), r.text          # the answer for a person with no account
    assert _get(pt, "/matching/v1/timebank/accounts", "resident1", params={"person_id": P5}).status_code == 403
    assert _get(pt, "/matching/v1/timebank/accounts", "resident3", params={"person_id": "nobody"}).status_code == 403
    before = _get(pt, f"/matching/v1/timebank/accounts/{ids['account_id']}", "ops1").json()["balance"]
    staff2 = pt.platform.headers("staff2")
    r = pt.request("POST", "/matching/v1/timebank/redemptions", headers=staff2, json={
        "posting_id": "authz-objects-steal", "account_id": ids["account_id"], "community": "110105001002",
        "amount": 1, "memo": "安康兑换"})
    assert r.status_code == 404, r.text
    r = pt.request("POST", "/matching/v1/timebank/credits", headers=staff2, json={
        "posting_id": "authz-objects-credit", "person_id": P5, "community": "110105001002", "unit": "minute",
        "amount": 1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "person_id", r.text
    assert _get(pt, f"/matching/v1/timebank/accounts/{ids['account_id']}", "ops1").json()["balance"] == before
    r = pt.request("POST", "/matching/v1/match/batch", headers=staff2, json={"place_code": "110105001001"})
    assert r.status_code == 200 and r.json()["needs"] == 0, r.text
