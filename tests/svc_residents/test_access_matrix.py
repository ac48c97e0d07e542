"""Every role × every endpoint, against own and other people's ids (OWASP API1 BOLA).

The expectations are written out by hand from the demo district (deploy/demo.py):
household 1 = P1, P2 and household 2 = P3 in grid A1; household 3 = P4.. in grid A2 (community 幸福);
household 4 = P7 in grid B1 (community 安康). resident1 is P1, resident3 is P3, proxy1 acts for P3: a helper is
refused every write that is no act of a proxy record (403 proxy.not_an_act, common/acting.py) before any object is
looked at; its acts here are the person's contact details, self tags and consents (profile.*).
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.svc_residents.conftest import GRID_A1, H, P, ROLES, make_id

BASE = "/residents/v1"
ALL_PERSONS = {f"P{i}" for i in range(1, 13)}
ALL_HOUSEHOLDS = {str(i) for i in range(1, 7)}

# role -> (persons visible, households visible, persons whose clear values it may reveal,
#          persons it may edit (self-service or staff), households it may edit, may register in grid A1,
#          may name grid A1's workers)
A = {"P1", "P2", "P3", "P4", "P5", "P6"}
B = ALL_PERSONS - A
EXPECT = {
    "resident1": ({"P1", "P2"}, {"1"}, {"P1"}, {"P1"}, set(), False, False),
    "resident3": ({"P3"}, {"2"}, {"P3"}, {"P3"}, set(), False, False),
    "proxy1": ({"P3"}, set(), set(), {"P3"}, set(), False, False),
    "grid1": ({"P1", "P2", "P3"}, {"1", "2"}, set(), {"P1", "P2", "P3"}, {"1", "2"}, True, False),
    "grid3": ({"P7"}, {"4"}, set(), {"P7"}, {"4"}, False, False),
    "staff1": (A, {"1", "2", "3"}, A, A, {"1", "2", "3"}, True, True),
    "staff2": (B, {"4", "5", "6"}, B, B, {"4", "5", "6"}, False, False),
    "street1": (ALL_PERSONS, ALL_HOUSEHOLDS, ALL_PERSONS, ALL_PERSONS, ALL_HOUSEHOLDS, True, True),
    "ops1": (ALL_PERSONS, ALL_HOUSEHOLDS, set(), ALL_PERSONS, ALL_HOUSEHOLDS, True, True),
}
NO_ACCESS = ("dept_mz", "provider1", "evaluator1", "portal")
assert set(EXPECT) | set(NO_ACCESS) == set(ROLES)
TARGET_PERSONS = ("P1", "P2", "P3", "P4", "P7")
TARGET_HOUSEHOLDS = ("1", "2", "3", "4")
# The roles with access write in their cases: each gets a freshly seeded app. The roles without access are refused
# every write, so theirs share one app per module and backend (a refusal that wrote would fail their own case).
WRITERS = sorted(EXPECT)
in_module_loop = pytest.mark.asyncio(loop_scope="module")


async def _version(client, model, id_):
    async with client.app.state.db.session() as s:
        return (await s.execute(select(model.version).where(model.id == id_))).scalar_one()


def helper(name) -> bool:
    """A helper acting for a person: its writes that are no act are refused first (403 proxy.not_an_act)."""
    return ROLES[name]["role"] == "proxy"


def _person_status(name, key, allowed):
    persons = EXPECT[name][0]
    return 404 if key not in persons else (200 if key in allowed else 403)


@pytest.mark.parametrize("name", WRITERS)
async def test_matrix(seeded, as_, name):
    await _matrix(seeded, as_, name)


@in_module_loop
@pytest.mark.parametrize("name", NO_ACCESS)
async def test_matrix_refused(module_seeded, as_, name):
    await _matrix(module_seeded, as_, name)


async def _matrix(seeded, as_, name):
    from svc_residents.models import Household, Person

    h = as_(name)
    got, want = {}, {}

    def check(label, status, expected):
        got[label], want[label] = status, expected

    no = name in NO_ACCESS
    visible, hh_visible, reveal, edit, hh_edit, register, workers = EXPECT.get(name, (set(),) * 5 + (False, False))
    for key in TARGET_PERSONS:
        pid = P(key)
        url = f"{BASE}/persons/{pid}"
        exp_read = 403 if no else (200 if key in visible else 404)
        check(f"GET person {key}", (await seeded.get(url, headers=h)).status_code, exp_read)
        check(f"GET consents {key}", (await seeded.get(f"{url}/consents", headers=h)).status_code, exp_read)
        exp_reveal = 403 if no else _person_status(name, key, reveal)
        r = await seeded.get(url, params={"reveal": "true", "purpose": "矩阵测试"}, headers=h)
        check(f"reveal {key}", r.status_code, exp_reveal)
        if r.status_code == 200:
            assert "*" not in r.json()["id_number"]
        log_ok = reveal | (ALL_PERSONS if name == "ops1" else set())
        check(f"access-log {key}", (await seeded.get(f"{url}/access-log", headers=h)).status_code,
              403 if no else _person_status(name, key, log_ok))
        exp_edit = 403 if no else _person_status(name, key, edit)
        r = await seeded.patch(url, headers=h, json={"version": await _version(seeded, Person, pid),
                                                     "preferred_channel": "counter"})
        check(f"PATCH person {key}", r.status_code, exp_edit)
        r = await seeded.put(f"{url}/tags/living_alone", headers=h, json={"code": "living_alone", "source": "self"})
        check(f"PUT tag {key}", r.status_code, exp_edit)
        r = await seeded.post(f"{url}/consents", headers=h,
                              json={"purpose": "contact", "granted": True, "channel": "phone"})
        check(f"POST consent {key}", r.status_code, 201 if exp_edit == 200 else exp_edit)
        r = await seeded.delete(f"{url}/tags/living_alone", headers=h)
        check(f"DELETE tag {key}", r.status_code, 204 if exp_edit == 200 else exp_edit)
    for key in TARGET_HOUSEHOLDS:
        hid = H(key)
        exp = 403 if no else (200 if key in hh_visible else 404)
        check(f"GET household {key}", (await seeded.get(f"{BASE}/households/{hid}", headers=h)).status_code, exp)
        r = await seeded.patch(f"{BASE}/households/{hid}", headers=h,
                               json={"version": await _version(seeded, Household, hid), "address": "新地址"})
        check(f"PATCH household {key}", r.status_code,
              403 if no or helper(name) else (404 if key not in hh_visible else (200 if key in hh_edit else 403)))
    # lists and search return exactly the visible records
    for label, req in (("GET persons", seeded.get(f"{BASE}/persons", params={"limit": 200}, headers=h)),
                       ("search persons", seeded.post(f"{BASE}/persons/search", json={"limit": 200}, headers=h))):
        r = await req
        check(label, r.status_code, 403 if no else 200)
        if r.status_code == 200:
            ids = {p["id"] for p in r.json()["items"]}
            assert ids == {P(k) for k in visible}, label
            assert all("*" in p["id_number"] for p in r.json()["items"])
    r = await seeded.get(f"{BASE}/households", params={"limit": 200}, headers=h)
    check("GET households", r.status_code, 403 if no else 200)
    if r.status_code == 200:
        assert {x["id"] for x in r.json()["items"]} == {H(k) for k in hh_visible}
    # registration in grid A1 and naming its workers
    staff_like = ROLES[name]["role"] in ("grid_worker", "community_staff", "street_staff", "ops")
    r = await seeded.post(f"{BASE}/households", headers=h, json={"address": "矩阵路1号", "grid_code": GRID_A1})
    check("POST household", r.status_code, 201 if register else 403)
    r = await seeded.post(f"{BASE}/persons", headers=h, json={
        "household_id": H("1"), "name": "矩阵", "id_number": make_id("19991231", seq=sorted(ROLES).index(name) + 1),
        "residency_type": "resident"})
    check("POST person", r.status_code, 201 if register else (422 if staff_like else 403))
    r = await seeded.put(f"{BASE}/places/{GRID_A1}/workers", headers=h, json={"user_ids": ["grid1"]})
    check("PUT workers", r.status_code, 200 if workers else 403)
    mismatches = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not mismatches, mismatches


# ---------------------------------------------------------------- places, household file, merge, changes,
# verifications: the endpoints the first matrix leaves out

GRID_B1 = "110105001002001"
SELF = {"resident1": {"P1"}, "resident3": {"P3"}, "proxy1": {"P3"}}
# who may see a grid's workers: the staff covering it, and ops
WORKERS_VISIBLE = {"grid1": {GRID_A1}, "grid3": {GRID_B1}, "staff1": {GRID_A1}, "staff2": {GRID_B1},
                   "street1": {GRID_A1, GRID_B1}, "ops1": {GRID_A1, GRID_B1}}
# who may create a place under a community: community staff of it, street staff above it, ops
PLACE_MAKERS = {"110105001001": {"staff1", "street1", "ops1"}, "110105001002": {"staff2", "street1", "ops1"}}


def _stub_upstreams(app):
    import httpx

    from common.http_client import ServiceClient

    def empty(request):
        if request.url.path.endswith("/timebank/accounts"):
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    app.state.services_client = ServiceClient("svc_services", "http://gw", transport=httpx.MockTransport(empty),
                                              retries=0, backoff=0)
    app.state.matching_client = ServiceClient("svc_matching", "http://gw", transport=httpx.MockTransport(empty),
                                              retries=0, backoff=0)
    for code in list(app.state.department_clients):
        app.state.department_clients[code] = ServiceClient(
            f"department:{code}", "http://gw", transport=httpx.MockTransport(refuse), retries=0, backoff=0)


def _masked_everywhere(doc) -> None:
    """No demo person's clear ID number or phone anywhere in a response."""
    from deploy import demo

    text = str(doc)
    for p in demo.PERSONS:
        assert p[2] not in text and p[3] not in text, (p[0], text[:300])


@pytest.mark.parametrize("name", WRITERS)
async def test_matrix_more(seeded, as_, name):
    await _matrix_more(seeded, as_, name)


@in_module_loop
@pytest.mark.parametrize("name", NO_ACCESS)
async def test_matrix_more_refused(module_seeded, as_, name):
    await _matrix_more(module_seeded, as_, name)


async def _matrix_more(seeded, as_, name):
    h = as_(name)
    role = ROLES[name]["role"]
    no = name in NO_ACCESS
    visible, hh_visible = EXPECT[name][:2] if not no else (set(), set())
    _stub_upstreams(seeded.app)
    got, want = {}, {}

    def check(label, status, expected):
        got[label], want[label] = status, expected

    # places: reference data for every signed-in caller
    r = await seeded.get(f"{BASE}/places", params={"limit": 200}, headers=h)
    check("GET places", r.status_code, 200)
    check("GET place A1", (await seeded.get(f"{BASE}/places/{GRID_A1}", headers=h)).status_code, 200)
    check("GET place unknown", (await seeded.get(f"{BASE}/places/110105009", headers=h)).status_code, 404)
    for grid in (GRID_A1, GRID_B1):
        r = await seeded.get(f"{BASE}/places/{grid}/workers", headers=h)
        check(f"GET workers {grid}", r.status_code, 200 if grid in WORKERS_VISIBLE.get(name, ()) else 403)
    for community, code in (("110105001001", "110105001001009"), ("110105001002", "110105001002009")):
        r = await seeded.post(f"{BASE}/places", headers=h, json={"code": code, "level": "grid", "name": "新网格",
                                                                 "parent_code": community})
        check(f"POST place in {community}", r.status_code, 201 if name in PLACE_MAKERS[community] else 403)
    # the household file: exactly who may read the household
    for key in TARGET_HOUSEHOLDS:
        r = await seeded.get(f"{BASE}/households/{H(key)}/file", headers=h)
        check(f"GET file {key}", r.status_code, 403 if no else (200 if key in hh_visible else 404))
        if r.status_code == 200:
            _masked_everywhere(r.json())
        r = await seeded.get(f"{BASE}/households/{H(key)}", headers=h)
        if r.status_code == 200:
            _masked_everywhere(r.json())
    # change history: staff of the place and ops, or the person themselves / their proxy
    for key in TARGET_PERSONS:
        r = await seeded.get(f"{BASE}/persons/{P(key)}/changes", headers=h)
        exp = 403 if no else 404 if key not in visible else (
            200 if role in ("grid_worker", "community_staff", "street_staff", "ops") or key in SELF.get(name, ())
            else 403)
        check(f"GET changes {key}", r.status_code, exp)
    # verifications: anyone who sees the person reads them; only staff of the place ask departments
    for key in TARGET_PERSONS:
        r = await seeded.get(f"{BASE}/persons/{P(key)}/verifications", headers=h)
        check(f"GET verifications {key}", r.status_code, 403 if no else (200 if key in visible else 404))
        r = await seeded.post(f"{BASE}/persons/{P(key)}/verifications", headers=h, json={"departments": ["gongan"]})
        exp = 403 if no or helper(name) else 404 if key not in visible else (
            200 if role in ("grid_worker", "community_staff", "street_staff") else 403)
        check(f"POST verifications {key}", r.status_code, exp)
        if r.status_code == 200:
            assert r.json()["verifications"][0]["status"] == "pending"
            _masked_everywhere(r.json())
    # merge: community / street staff covering both records
    for survivor, dup in (("P1", "P2"), ("P4", "P7")):
        r = await seeded.post(f"{BASE}/persons/{P(survivor)}/merge", headers=h,
                              json={"duplicate_id": P(dup), "reason": "矩阵测试"})
        exp = 403 if no or helper(name) else 404 if survivor not in visible else 422 if dup not in visible else (
            200 if role in ("community_staff", "street_staff") else 403)
        check(f"merge {dup}->{survivor}", r.status_code, exp)
        if r.status_code == 200:
            _masked_everywhere(r.json())
        if r.status_code == 422:
            assert r.json()["errors"][0]["field"] == "duplicate_id"
    mismatches = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not mismatches, mismatches


@in_module_loop
async def test_proxy_beyond_their_person(module_seeded, as_, auth):
    """A proxy's place scopes in the token give it nothing beyond the person it acts for (reads and refusals)."""
    seeded = module_seeded
    h = as_("proxy1")  # acts for P3, token also carries community:110105001001
    assert (await seeded.get(f"{BASE}/persons/{P('P1')}", headers=h)).status_code == 404
    assert (await seeded.get(f"{BASE}/households/{H('2')}", headers=h)).status_code == 404  # not even P3's
    assert (await seeded.get(f"{BASE}/households/{H('2')}/file", headers=h)).status_code == 404
    assert (await seeded.get(f"{BASE}/places/{GRID_A1}/workers", headers=h)).status_code == 403
    r = await seeded.post(f"{BASE}/places", headers=h, json={"code": "110105001001009", "level": "grid",
                                                             "name": "x", "parent_code": "110105001001"})
    assert r.status_code == 403
    # a proxy with no acting_for sees nobody
    lost = auth(role="proxy", user="proxy9", scopes=["community:110105001001"])
    r = await seeded.get(f"{BASE}/persons", headers=lost)
    assert r.status_code == 200 and r.json()["items"] == []
