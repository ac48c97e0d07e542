"""The README's tour through a typed client generated from the gateway's `/openapi.json` (issue 31): a schema
change that breaks a generated client (a model dropped, an operation renamed, an answer that no longer parses into
its declared model) fails here.

The client is generated in this module's set-up by openapi-python-client from the tool venv `.venv-tools`
(`make client-tools`; tools/generate_client.py), then driven against the whole platform in process (tests/inprocess.py)
on SQLite and on PostgreSQL: sign in, submit, accept, dispatch, claim, start, resolve, rate, the household file, the
KPIs. Without the tool venv the test skips (`client-tools`, which CI requires: .ci/run builds it first).
"""
from __future__ import annotations

import importlib
import sys
from contextlib import AsyncExitStack

import httpx
import pytest

from common.clock import local_date
from tests.components import missing
from tests.conftest import BACKENDS, fresh_database
from tests.inprocess import SERVICES, start_platform
from tools.generate_client import GENERATOR, PACKAGE, generate

PASSWORD = "onenet-demo-2026"


@pytest.fixture(params=BACKENDS)
async def platform(request, tmp_path_factory):
    if not GENERATOR.exists():
        missing("client-tools", f"{GENERATOR} is missing: `make client-tools` builds the generator's venv")
    tmp = tmp_path_factory.mktemp(f"client-{request.param}")
    async with AsyncExitStack() as stack:
        urls = {}
        if request.param == "postgres":
            for pkg in SERVICES:
                urls[pkg] = await stack.enter_async_context(fresh_database("postgres", tmp / pkg))
        yield await start_platform(stack, tmp, urls=urls)


@pytest.fixture(scope="module")
def client_package(tmp_path_factory):
    """The generated package for a document, generated once per document (both backends serve the same one); one
    module fixture for both backends, so that `--dist loadgroup` runs them on one worker and generates once."""
    import json

    generated: dict[str, object] = {}

    def package(doc: dict):
        key = json.dumps(doc, sort_keys=True)
        if key not in generated:
            out = tmp_path_factory.mktemp("generated")
            generate(doc, out)
            sys.path.insert(0, str(out))
            for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
                del sys.modules[name]
            generated[key] = importlib.import_module(PACKAGE)
        return generated[key]

    return package


def _api(module: str):
    return importlib.import_module(f"{PACKAGE}.api.{module}")


def _body_model(op):
    """The model an operation's body is typed with (the generator names it after the component)."""
    import typing

    return typing.get_type_hints(op.asyncio_detailed)["body"]


async def test_the_readme_tour_through_the_generated_client(platform, client_package):
    doc = (await platform.client.get("/openapi.json")).json()
    assert not doc["info"].get("x-onenet-unavailable"), doc["info"]
    pkg = client_package(doc)
    models = importlib.import_module(f"{PACKAGE}.models")
    http = {"transport": httpx.ASGITransport(app=platform.gateway)}
    anonymous = pkg.Client(base_url="http://gw", httpx_args=http, raise_on_unexpected_status=True)
    # the operations by what the generator names them (tag folder, operation id): a rename fails the import
    token_op = _api("auth_身份认证.token_auth_v1_token_post")
    submit_op = _api("requests_诉求工单.submit_services_v1_requests_post")
    transition_op = _api("requests_诉求工单.transition_services_v1_requests_request_id_transitions_post")
    households_op = _api("households_户.list_households_residents_v1_households_get")
    file_op = _api("households_户.get_household_file_residents_v1_households_household_id_file_get")
    kpis_op = _api("kpis_指标.kpis_metrics_v1_kpis_get")

    async def sign_in(username: str):
        form = models.BodyTokenAuthV1TokenPost.from_dict({"grant_type": "password", "username": username,
                                                          "password": PASSWORD})
        answer = await token_op.asyncio_detailed(client=anonymous, body=form)
        assert answer.status_code == 200, answer.content
        token = answer.parsed.access_token
        return pkg.AuthenticatedClient(base_url="http://gw", token=token, httpx_args=http,
                                       raise_on_unexpected_status=True)

    resident, staff, grid, evaluator = [await sign_in(u) for u in ("resident1", "staff1", "grid1", "evaluator1")]

    body = models.RequestCreate.from_dict({
        "item_code": "SH-WX-001", "channel": "app", "description": "厨房水龙头漏水",
        "attributes": {"appliance": "plumbing"}, "location": {"grid": "110105001001001"}})
    submitted = await submit_op.asyncio_detailed(client=resident, body=body, idempotency_key="client-tour-1")
    assert submitted.status_code == 201, submitted.content
    request = submitted.parsed
    assert isinstance(request, models.RequestOut) and request.state == "submitted"
    again = await submit_op.asyncio_detailed(client=resident, body=body, idempotency_key="client-tour-1")
    assert again.status_code in (200, 201) and again.parsed.id == request.id  # the replay: the first answer

    steps = [(staff, {"action": "accept"}, "accepted"),
             (staff, {"action": "dispatch", "assignee": {"kind": "grid_worker", "id": "grid1", "name": "陈磊"}},
              "dispatched"),
             (grid, {"action": "claim"}, "claimed"),
             (grid, {"action": "start"}, "in_progress"),
             (grid, {"action": "resolve", "note": "已修好"}, "resolved"),
             (resident, {"action": "rate", "rating": 5, "comment": "很及时"}, "rated")]
    transition_in = _body_model(transition_op)
    version = request.version
    for who, step, state in steps:
        transition = transition_in.from_dict({**step, "version": version})
        answer = await transition_op.asyncio_detailed(request.id, client=who, body=transition)
        assert answer.status_code == 200, (step, answer.content)
        assert answer.parsed.state == state and answer.parsed.version == version + 1
        version = answer.parsed.version
    stale = await transition_op.asyncio_detailed(request.id, client=resident, body=transition_in.from_dict(
        {"action": "rate", "rating": 4, "version": 1}))
    assert stale.status_code == 409, stale.content  # a declared refusal, parsed as the problem it is

    households = await households_op.asyncio_detailed(client=staff, limit=5)
    assert households.status_code == 200 and households.parsed.items, households.content
    household_file = await file_op.asyncio_detailed(households.parsed.items[0].id, client=staff)
    assert household_file.status_code == 200, household_file.content

    # the KPIs of the month the request was submitted in (its own time, not the wall's: a run at a month's end)
    month = local_date(request.created_at).strftime("%Y-%m")
    kpis = await kpis_op.asyncio_detailed(client=evaluator, scope="110105", period=month)
    assert kpis.status_code == 200, kpis.content
