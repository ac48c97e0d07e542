"""Fixtures for svc_residents: a client with its own field keys, one with the demo district seeded, and the
notification engine's rig (`app`)."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_asyncio

from common.clock import FrozenClock
from deploy import demo
from tests.conftest import BACKENDS, copy_template, fresh_database, start_service

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
async def client(service_client, tmp_path, db_url, request):
    keys = tmp_path / "keys" / "fields.json"
    if "seeded" not in request.fixturenames:
        c = await service_client("svc_residents", field_keys_file=keys)
    else:  # the demo district: a copy of the database seed_demo filled once, with the field keys it used
        await copy_seeded(db_url, keys)
        c = await service_client("svc_residents", field_keys_file=keys, migrated=True)
    c.app.state.clock = FrozenClock(START)
    return c


async def copy_seeded(db_url: str, keys) -> None:
    """Make `db_url` a copy of the seeded template and `keys` its field keys."""
    await copy_template("svc_residents_seeded", db_url, _seed_template)
    keys.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_SEEDED_KEYS, keys)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def module_seeded(request, tmp_path_factory, jwks):
    """`seeded` once per module and backend, for tests that only read or are refused (and run in the module's loop,
    `pytest.mark.asyncio(loop_scope="module")`)."""
    tmp = tmp_path_factory.mktemp("residents")
    async with fresh_database(request.param, tmp) as url, AsyncExitStack() as stack:
        await copy_seeded(url, tmp / "keys" / "fields.json")
        c = await start_service(stack, "svc_residents", url, jwks, migrated=True,
                                field_keys_file=tmp / "keys" / "fields.json")
        c.app.state.clock = FrozenClock(START)
        yield c


@pytest.fixture
async def app(service_client, tmp_path):
    """The notification engine's rig: the app with the demo district seeded (seed_demo) on START's clock and no
    dispatcher of its own (a test hands deliveries on itself); `app.client` is its client."""
    from svc_residents.seed import seed_demo

    c = await service_client("svc_residents", field_keys_file=tmp_path / "keys" / "fields.json",
                             notify_dispatch_enabled=False)
    c.app.state.clock = FrozenClock(START)
    await seed_demo(c.app.state.db, c.app.state.protection, clock=c.app.state.clock)
    c.app.client = c
    return c.app


@pytest.fixture
async def seeded(client):
    """The demo district seeded (deploy/demo.py) on START's clock."""
    return client


# one field keys file for every seeded template: its rows hold values sealed with these keys
_SEEDED_KEYS = Path(tempfile.mkdtemp(prefix="onenet-residents-keys-")) / "fields.json"


async def _seed_template(url: str) -> None:
    """Migrate and seed the template a seeded test's database copies: seed_demo by the app, as a test would run
    it, once per session and backend (seeding for each test cost about a second of each of some 300 tests)."""
    from svc_residents.seed import seed_demo

    from tests.conftest import migrate_database

    await migrate_database("svc_residents", url)
    async with AsyncExitStack() as stack:
        c = await start_service(stack, "svc_residents", url, {"keys": []}, migrated=True,
                                field_keys_file=_SEEDED_KEYS)
        c.app.state.clock = FrozenClock(START)
        await seed_demo(c.app.state.db, c.app.state.protection, clock=c.app.state.clock)


@pytest.fixture
def as_(auth):
    def _as(name: str) -> dict[str, str]:
        return auth(**ROLES[name])

    return _as
