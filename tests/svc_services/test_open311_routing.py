"""Where no Open311 route answers (an unknown document, an empty format, an id holding a slash, a method the path
does not take), the refusal is GeoReport v2's error list in the path's format, as its OpenAPI declares; elsewhere
the platform's problem+json stays."""
from __future__ import annotations

import pytest

from tests.svc_services.test_open311 import BASE, error_list


@pytest.mark.parametrize("path, fmt", [
    ("/discovery.", "json"),               # an empty format matches no route
    ("/nothing.xml", "xml"),               # no such document
    ("/requests/a%2Fb.xml", "xml"),        # an id with a slash
    ("/services/x/y.json", "json"),
    ("/media/a%2Fb.jpg", "json"),
])
async def test_an_unrouted_open311_path_is_a_georeport_404(client, path, fmt):
    r = await client.get(BASE + path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json" if fmt == "json" else "text/xml")
    assert error_list(r, fmt) == [{"code": 404, "description": "资源不存在"}]  # the platform's detail, Chinese by default


@pytest.mark.parametrize("method, path, allow", [
    ("PATCH", "/discovery.json", "GET"),
    ("DELETE", "/requests.xml", "GET, POST"),
    ("PUT", "/tokens/t1.json", "GET"),
])
async def test_an_undeclared_method_is_a_georeport_405_with_allow(client, method, path, allow):
    r = await client.request(method, BASE + path, headers={"Accept-Language": "en"})
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    fmt = "xml" if path.endswith(".xml") else "json"
    assert error_list(r, fmt) == [{"code": 405, "description": "Method not allowed"}]


async def test_other_paths_keep_the_platform_problem(client):
    r = await client.get("/services/v1/nothing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found"


async def test_the_format_is_declared_as_served(client):
    """`{fmt}` declares GeoReport v2's formats, each served; another is the 404 the fallback above answers."""
    doc = (await client.get("/openapi.json")).json()
    declared = [p["schema"]["enum"] for path, item in doc["paths"].items() if path.startswith("/open311/")
                for op in item.values() for p in op.get("parameters", []) if p["name"] == "fmt"]
    assert len(declared) == 7 and all(e == ["json", "xml"] for e in declared)
    ok = doc["paths"]["/open311/v2/discovery.{fmt}"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/xml"} <= set(ok)
    (token,) = [p for p in doc["paths"]["/open311/v2/tokens/{token}.{fmt}"]["get"]["parameters"] if p["name"] == "token"]
    assert token["schema"]["pattern"] == "^[^/\\n]+$"  # one segment: with a slash no route answers (a 404 above)
    for fmt in declared[0]:
        assert (await client.get(f"{BASE}/discovery.{fmt}")).status_code == 200
    assert error_list(await client.get(f"{BASE}/discovery.yaml"), "json")[0]["code"] == 404
