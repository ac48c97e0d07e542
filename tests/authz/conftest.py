"""One in-process platform (tests/inprocess.py: gateway + four services + department emulators, demo district
seeded) shared by the authorisation tests of this package, and the ids of demo objects they aim at."""
from __future__ import annotations

import pytest

from deploy.demo import demo_id
from tests.inprocess import PlatformThread


@pytest.fixture(scope="package")
def pt(tmp_path_factory):
    pt = PlatformThread(tmp_path_factory.mktemp("authz"))
    with pt:
        yield pt


def first(pt, path: str, key: str = "id", **params) -> str:
    r = pt.request("GET", path, params=params, headers=pt.platform.headers("ops1"))
    assert r.status_code == 200, (path, r.text)
    body = r.json()
    items = body if isinstance(body, list) else (body.get("items") or body.get("contents") or [])
    return str(items[0][key]) if items else "no-such-object"


@pytest.fixture(scope="package")
def ids(pt) -> dict[str, str]:
    """Path parameters for every endpoint: real demo objects where they exist."""
    return {
        "request_id": demo_id("request", "R1"),
        "org_id": demo_id("organization", "O1"),
        "service_id": first(pt, "/matching/v1/hsds/services"),
        "need_id": first(pt, "/matching/v1/needs"),
        "offer_id": first(pt, "/matching/v1/offers"),
        "account_id": first(pt, "/matching/v1/timebank/accounts", person_id=demo_id("person", "P5")),
        "volunteer_id": demo_id("volunteer", "P5"),
        "case_id": "no-such-case",
        "warning_id": "no-such-warning",
        "grant_id": first(pt, "/exchange/v1/grants"),
    }
