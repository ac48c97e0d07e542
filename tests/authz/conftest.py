"""One in-process platform (tests/inprocess.py: gateway + four services + department emulators, demo district
seeded) shared by the authorisation tests of this package, and the ids of demo objects they aim at."""
from __future__ import annotations

import pytest

from deploy.demo import demo_id, person_id
from tests.inprocess import PlatformThread


@pytest.fixture(scope="package")
def pt(tmp_path_factory):
    # passwords hash at argon2's lowest cost here too (tests/conftest.py's _cheap_password_hashes)
    pt = PlatformThread(tmp_path_factory.mktemp("authz"))
    with pt:
        yield pt


def first(pt, path: str, key: str = "id", **params) -> str:
    r = pt.request("GET", path, params=params, headers=pt.platform.headers("ops1"))
    assert r.status_code == 200, (path, r.text)
    body = r.json()
    items = body if isinstance(body, list) else (body.get("items") or body.get("contents") or [])
    return str(items[0][key]) if items else "no-such-object"


def need_and_offer(pt) -> tuple[str, str]:
    """The demo has no need or offer: record one (resident1's, in grid A1 of 幸福) and match it, through the APIs,
    so that the need and offer rows meet a real object."""
    h = pt.platform.headers("staff1")
    r = pt.request("POST", "/matching/v1/needs", headers=h, json={
        "category": "elderly_care", "person_id": person_id("P1"), "place_code": "110105001001001",
        "latitude": 39.9219, "longitude": 116.4436, "description": "authz matrix: 助餐"})
    assert r.status_code == 201, r.text
    need_id = r.json()["id"]
    r = pt.request("POST", f"/matching/v1/needs/{need_id}/match", headers=h)
    assert r.status_code == 201 and r.json()["offer"], r.text
    return need_id, r.json()["offer"]["id"]


def funded_account(pt) -> str:
    """P5's (the volunteer's) account, credited through the API so that the redemption rows can spend from it."""
    account_id = first(pt, "/matching/v1/timebank/accounts", person_id=demo_id("person", "P5"))
    h = pt.platform.headers("ops1")
    acc = pt.request("GET", f"/matching/v1/timebank/accounts/{account_id}", headers=h)
    assert acc.status_code == 200, acc.text
    r = pt.request("POST", "/matching/v1/timebank/credits", headers=h, json={
        "posting_id": "authz-fund-p5", "person_id": demo_id("person", "P5"), "community": "110105001001",
        "unit": acc.json()["unit"], "amount": 100, "memo": "authz matrix: redemptions"})
    assert r.status_code == 201, r.text
    return account_id


@pytest.fixture(scope="package")
def ids(pt) -> dict[str, str]:
    """Path parameters for every endpoint: real demo objects where they exist."""
    need_id, offer_id = need_and_offer(pt)
    return {
        "request_id": demo_id("request", "R1"),
        "org_id": demo_id("organization", "O1"),
        "service_id": first(pt, "/matching/v1/hsds/services"),
        "need_id": need_id,
        "offer_id": offer_id,
        "account_id": funded_account(pt),
        "volunteer_id": demo_id("volunteer", "P5"),
        "person_id": "authz-place-probe",  # the person-place rows: no demo person's place is touched
        "case_id": "no-such-case",
        "warning_id": "no-such-warning",
        "grant_id": first(pt, "/exchange/v1/grants"),
    }
