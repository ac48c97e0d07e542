"""Fixtures for svc_residents: a client with its own field keys, and one with the demo district seeded."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from common.clock import FrozenClock
from deploy import demo

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def make_id(birth: str = "19800101", seq: int = 1, division: str = "110105", sex: str = "M") -> str:
    """A valid GB 11643 ID number (odd sequence digit = male)."""
    s = seq * 2 + (1 if sex == "M" else 0)
    body = f"{division}{birth}{s:03d}"[:17]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS)) % 11]


# The residents app's "now" in these tests (Monday 10:00 in Beijing): ages and tag expiry do not follow the wall.
START = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)

P = demo.person_id
H = demo.household_id
GRID_A1, GRID_A2, GRID_B1, GRID_B2 = (g["code"] for g in demo.GRIDS)

ROLES = {
    "resident1": dict(role="resident", user="resident1", scopes=[f"person:{P('P1')}", f"household:{H('1')}"]),
    "resident3": dict(role="resident", user="resident3", scopes=[f"person:{P('P3')}", f"household:{H('2')}"]),
    "proxy1": dict(role="proxy", user="proxy1", scopes=["community:110105001001"], acting_for=P("P3")),
    "grid1": dict(role="grid_worker", user="grid1", scopes=[f"grid:{GRID_A1}"]),
    "grid3": dict(role="grid_worker", user="grid3", scopes=[f"grid:{GRID_B1}"]),
    "staff1": dict(role="community_staff", user="staff1", scopes=["community:110105001001"]),
    "staff2": dict(role="community_staff", user="staff2", scopes=["community:110105001002"]),
    "street1": dict(role="street_staff", user="street1", scopes=["street:110105001"]),
    "ops1": dict(role="ops", user="ops1"),
    "dept_mz": dict(role="dept_staff", user="dept_mz", scopes=["dept:minzheng"]),
    "provider1": dict(role="provider", user="provider1", scopes=["provider:x"]),
    "evaluator1": dict(role="evaluator", user="evaluator1", scopes=["district:110105"]),
    "portal": dict(role="system", user="portal"),
}


@pytest.fixture
async def client(service_client, tmp_path):
    c = await service_client("svc_residents", field_keys_file=tmp_path / "keys" / "fields.json")
    c.app.state.clock = FrozenClock(START)
    return c


@pytest.fixture
async def seeded(client):
    from svc_residents.seed import seed_demo

    await seed_demo(client.app.state.db, client.app.state.protection, clock=client.app.state.clock)
    return client


@pytest.fixture
def as_(auth):
    def _as(name: str) -> dict[str, str]:
        return auth(**ROLES[name])

    return _as
