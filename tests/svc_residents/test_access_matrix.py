"""Every role × every endpoint, against own and other people's ids (OWASP API1 BOLA).

The expectations are written out by hand from the demo district (deploy/demo.py):
household 1 = P1, P2 and household 2 = P3 in grid A1; household 3 = P4.. in grid A2 (community 幸福);
household 4 = P7 in grid B1 (community 安康). resident1 is P1, resident3 is P3, proxy1 acts for P3.
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


async def _version(client, model, id_):
    async with client.app.state.db.session() as s:
        return (await s.execute(select(model.version).where(model.id == id_))).scalar_one()


def _person_status(name, key, allowed):
    persons = EXPECT[name][0]
    return 404 if key not in persons else (200 if key in allowed else 403)


@pytest.mark.parametrize("name", sorted(ROLES))
async def test_matrix(seeded, as_, name):
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
              403 if no else (404 if key not in hh_visible else (200 if key in hh_edit else 403)))
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
