from __future__ import annotations

from datetime import datetime, timezone

from contextlib import AsyncExitStack

import httpx
import pytest
import pytest_asyncio

from common.clock import FrozenClock
from common.http_client import ServiceClient
from tests.conftest import BACKENDS, fresh_database, start_service

COMMUNITY = "110105001001"
GRID1 = "110105001001001"
GRID2 = "110105001001002"
OTHER_GRID = "110105001002001"
P1 = "person-1"
P3 = "person-3"

OPS = dict(role="ops", user="ops1")
STAFF = dict(role="community_staff", user="staff1", scopes=[f"community:{COMMUNITY}"])
STAFF_OTHER = dict(role="community_staff", user="staff2", scopes=["community:110105001002"])
STREET = dict(role="street_staff", user="street1", scopes=["street:110105001"])
GRIDW = dict(role="grid_worker", user="grid1", scopes=[f"grid:{GRID1}"])
GRIDW2 = dict(role="grid_worker", user="grid2", scopes=[f"grid:{GRID2}"])
RES1 = dict(role="resident", user="resident1", scopes=[f"person:{P1}"])
RES3 = dict(role="resident", user="resident3", scopes=[f"person:{P3}"])
PROXY3 = dict(role="proxy", user="proxy1", scopes=[f"community:{COMMUNITY}"], acting_for=P3)
PROVIDER = dict(role="provider", user="prov1", scopes=["provider:org-1"])
PROVIDER2 = dict(role="provider", user="prov2", scopes=["provider:org-2"])
DEPT = dict(role="dept_staff", user="mz1", scopes=["dept:minzheng"])

# Monday 2026-03-02 10:00 Asia/Shanghai
START = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)

MEAL = {
    "code": "YL-ZC-001", "name": "老年助餐", "category": "elderly_care", "tier": "basic", "department": "minzheng",
    "response_hours": 2, "resolution_hours": 48, "working_hours": False,
    "materials": [{"code": "dibao_certificate", "name": "低保证明", "source": "exchange", "department": "minzheng"}],
    "attributes": [
        {"code": "meal_time", "datatype": "singlevaluelist", "description": "送餐时段", "required": True,
         "values": [{"key": "lunch", "name": "午餐"}, {"key": "dinner", "name": "晚餐"}]},
        {"code": "portions", "datatype": "number", "description": "份数", "required": False},
        {"code": "start_on", "datatype": "datetime", "description": "开始日期", "required": False},
        {"code": "diet", "datatype": "multivaluelist", "description": "饮食要求",
         "values": [{"key": "soft", "name": "软食"}, {"key": "low_salt", "name": "低盐"}]},
        {"code": "remark", "datatype": "text", "description": "备注"},
        {"code": "contact", "datatype": "string", "description": "联系人"},
    ],
}
REPAIR = {"code": "SH-WX-001", "name": "家电家政维修", "category": "life_service", "tier": "featured",
          "department": "community", "response_hours": 12, "resolution_hours": 72, "working_hours": True}
ALARM = {"code": "YJ-HJ-001", "name": "一键呼叫（紧急求助）", "category": "emergency", "tier": "basic",
         "department": "community", "response_hours": 0, "resolution_hours": 2, "emergency": True}


@pytest.fixture(autouse=True)
def _no_background_scan(monkeypatch):
    # The scheduler runs on real time; tests drive run_sla_scan themselves with a FrozenClock.
    monkeypatch.setenv("ONENET_SLA_SCAN_ENABLED", "false")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def upstreams() -> dict:
    """Handlers of svc_services' outgoing calls: `matching` (svc_matching) and `exchange` (the gateway: residents
    and departments). Down (connection refused) unless a test puts a handler in; never a real port."""
    return {"matching": refuse, "exchange": refuse}


async def wire(c, clock, upstreams):
    """svc_services' client `c` on `clock`, its outgoing calls answered by `upstreams`' handlers."""
    c.app.state.clock = clock
    for name, attr, base in (("matching", "matching_client", "http://gw"), ("exchange", "exchange_client", "http://gw")):
        await getattr(c.app.state, attr).aclose()
        transport = httpx.MockTransport(lambda request, name=name: upstreams[name](request))
        setattr(c.app.state, attr, ServiceClient(name, base, transport=transport, retries=0, backoff=0))
    return c


class StoreDown:
    """An app's object store taken down and brought back (the attachment tests' store-down cases): `down(app)` puts
    in a store of the same kind that cannot work (local: a file where its directory should be; S3: a port nothing
    listens on, a 1 s timeout), `await up(app)` closes it and puts the working store back."""

    def __init__(self, tmp_path) -> None:
        self.blocked = tmp_path / "blocked"
        self.working = None

    def down(self, app) -> None:
        from common.storage import LocalStore
        from common.storage.s3 import S3Store
        from tests.s3server import free_port

        working = app.state.store
        if self.working is None:
            self.working = working
        if isinstance(working, LocalStore):
            if not self.blocked.exists():
                self.blocked.write_text("a file where the store's directory should be")
            app.state.store = LocalStore(self.blocked / "objects")
        else:
            app.state.store = S3Store(bucket=working.bucket, endpoint_url=f"http://127.0.0.1:{free_port()}",
                                      access_key_id="t", secret_access_key="t", timeout=1.0)

    async def up(self, app) -> None:
        await app.state.store.aclose()
        app.state.store = self.working


@pytest.fixture
def store_down(tmp_path) -> StoreDown:
    return StoreDown(tmp_path)


@pytest.fixture
async def client(service_client, clock, upstreams):
    return await wire(await service_client("svc_services"), clock, upstreams)


@pytest.fixture
async def ready(client, auth):
    """Grids and the three test items in place."""
    return await put_grids_and_items(client, auth)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def module_ready(request, tmp_path_factory, jwks, make_token):
    """`ready` once per module and backend, for a module whose tests each make objects of their own (or change
    nothing) and run in the module's loop (`pytest.mark.asyncio(loop_scope="module")`): svc_services with the grids
    and test items, its upstreams down, on START's clock."""
    def auth(role: str = "ops", **kw) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(role, **kw)}"}

    async with fresh_database(request.param, tmp_path_factory.mktemp("svc")) as url, AsyncExitStack() as stack:
        c = await start_service(stack, "svc_services", url, jwks, sla_scan_enabled=False)
        await wire(c, FrozenClock(START), {"matching": refuse, "exchange": refuse})
        yield await put_grids_and_items(c, auth)


async def put_grids_and_items(client, auth):
    for code, name, lat, lon in ((GRID1, "幸福一网格", 39.9210, 116.4430), (GRID2, "幸福二网格", 39.9230, 116.4460),
                                 (OTHER_GRID, "安康一网格", 39.9180, 116.4510)):
        r = await client.put(f"/services/v1/grids/{code}", json={"name": name, "lat": lat, "long": lon},
                             headers=auth(**OPS))
        assert r.status_code == 200, r.text
    for item in (MEAL, REPAIR, ALARM):  # district-wide items: ops maintains them (catalogue.service.may_write)
        r = await client.post("/services/v1/catalogue/items", json=item, headers=auth(**OPS))
        assert r.status_code == 201, r.text
    return client


async def submit(client, auth, who=RES1, **over):
    body = {"item_code": "SH-WX-001", "channel": "app", "description": "厨房水管漏水",
            "location": {"grid": GRID1}}
    body.update(over)
    r = await client.post("/services/v1/requests", json=body, headers=auth(**who))
    return r


async def move(client, auth, rid, action, who, version=None, **extra):
    if version is None:
        r = await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))
        version = r.json()["version"]
    return await client.post(f"/services/v1/requests/{rid}/transitions",
                             json={"action": action, "version": version, **extra}, headers=auth(**who))
