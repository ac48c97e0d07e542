"""An undeclared method answers 405 with an `Allow` naming every method of the path (issue 31), also where the
path's methods come from several routes (svc_services' request list GET and intake POST; the direct route)."""
from __future__ import annotations

import pytest

from common.openapi_contract import allowed_methods


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_allow_lists_every_method_of_the_path(service_client, auth, method):
    client = await service_client("svc_services")
    r = await client.request(method, "/services/v1/requests", headers=auth("ops"))
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "GET, POST"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "method_not_allowed"
    # Allow is the truth: each method it names is served (not 405)
    for m in r.headers["allow"].split(", "):
        assert (await client.request(m, "/services/v1/requests", headers=auth("ops"))).status_code != 405


async def test_allowed_methods_reads_every_route(service_client):
    client = await service_client("svc_services")
    assert allowed_methods(client.app, "/services/v1/requests") == "GET, POST"
    assert allowed_methods(client.app, "/nowhere") == ""
