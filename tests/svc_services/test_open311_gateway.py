"""Open311 GeoReport v2 through the gateway's `/open311/v2/`: anonymous public reads, POST with `api_key` checked
at the gateway (revoked members stopped there), the gateway's own refusals in Open311's error format."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from contextlib import AsyncExitStack

import httpx
import pytest

from common.auth import TokenVerifier
from tests.conftest import migrate_database
from tests.svc_services.conftest import P1


@pytest.fixture
async def gw(ready, jwks, tmp_path):
    """The gateway (SQLite of its own) in front of the in-process svc_services of `ready`."""
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    url = f"sqlite+aiosqlite:///{tmp_path}/gw.db"
    await migrate_database("gateway", url)
    settings = GatewaySettings(database_url=url, keys_dir=tmp_path / "keys", outbox_relay_enabled=False,
                               upstream_retries=0)
    svc = ready.app
    transport = httpx.ASGITransport(app=svc)
    app = create_app(settings, transports={"open311": transport, "services": transport})
    # svc_services trusts the gateway's keys (and still the test keys the fixtures used)
    svc.state.verifier = TokenVerifier(svc.state.settings,
                                       jwks={"keys": jwks["keys"] + app.state.token_issuer.jwks()["keys"]})
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw"))
        client.app = app
        yield client


def token(gw, role, member="portal", **kw):
    return gw.app.state.token_issuer.issue(member=member, role=role, **{"scopes": [], **kw})["access_token"]


async def test_open311_through_the_gateway(gw):
    # anonymous public reads
    r = await gw.get("/open311/v2/discovery.json")
    assert r.status_code == 200 and r.headers["x-onenet-service"] == "open311"
    assert r.json()["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    r = await gw.get("/open311/v2/services.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert "YL-ZC-001" in [s.findtext("service_code") for s in ET.fromstring(r.content).findall("service")]
    r = await gw.get("/open311/v2/services/YL-ZC-001.json")
    assert r.status_code == 200 and r.json()["service_code"] == "YL-ZC-001"

    # POST with api_key in the form: verified at the gateway, then by svc_services
    key = token(gw, "resident", subject="resident1", scopes=[f"person:{P1}"])
    form = {"service_code": "YL-ZC-001", "address_id": "110105001001001", "api_key": key,
            "attribute[meal_time]": "lunch", "description": "送午餐，电话13812345678"}
    r = await gw.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 201, r.text
    rid = r.json()[0]["service_request_id"]
    assert "token" not in r.json()[0]   # GeoReport v2: service_request_id or token, not both

    # anonymous reads of it: no personal data, timeline with extensions=true
    r = await gw.get(f"/open311/v2/requests/{rid}.xml?extensions=true")
    assert r.status_code == 200
    doc = ET.fromstring(r.content).find("request")
    assert doc.findtext("status") == "open" and doc.findtext("status_notes").startswith("已提交")
    assert [e.findtext("action") for e in doc.findall("extended_attributes/timeline/entry")] == ["submit"]
    for secret in (P1, "resident1", "portal", "13812345678"):
        assert secret not in r.text
    r = await gw.get("/open311/v2/requests.json?service_code=YL-ZC-001&status=open")
    assert [d["service_request_id"] for d in r.json()] == [rid]
    r = await gw.get(f"/open311/v2/tokens/{rid}.json")
    assert r.json() == [{"service_request_id": rid, "token": rid}]
    # a bearer header works for reads too (the exchange path)
    r = await gw.get("/open311/v2/requests.json", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and [d["service_request_id"] for d in r.json()] == [rid]

    # a client app with its own (client-credentials) key: the exchange member submits for a named person
    app_key = token(gw, "system", member="city-hotline", subject="city-hotline")
    r = await gw.post("/open311/v2/requests.json", data={**form, "api_key": app_key, "account_id": P1})
    assert r.status_code == 201, r.text
    rid2 = r.json()[0]["service_request_id"]
    staff = token(gw, "ops", subject="ops1")
    r = await gw.get(f"/services/v1/requests/{rid2}", headers={"Authorization": f"Bearer {staff}"})
    assert r.status_code == 200, r.text
    assert r.json()["submitted_by"].startswith("city-hotline") and r.json()["person_id"] == P1
    assert r.json()["channel"] == "api"

    # the gateway's own refusals, in Open311's format
    no_key = {k: v for k, v in form.items() if k != "api_key"}
    r = await gw.post("/open311/v2/requests.json", data=no_key)
    assert r.status_code == 401 and r.json()[0]["code"] == 401 and r.headers["www-authenticate"]
    r = await gw.post("/open311/v2/requests.xml", data={**form, "api_key": "not-a-token"})
    assert r.status_code == 401
    assert ET.fromstring(r.content).tag == "errors" and ET.fromstring(r.content).findtext("error/code") == "401"
    gw.app.state.revoked_members.add("portal")
    r = await gw.post("/open311/v2/requests.json", data=form)
    assert r.status_code == 403 and r.json()[0]["code"] == 403
    r = await gw.get("/open311/v2/services.json")  # public reads stay open
    assert r.status_code == 200
    r = await gw.delete(f"/open311/v2/requests/{rid}.json")
    assert r.status_code == 401 and r.json()[0]["code"] == 401


async def test_the_gateway_sends_no_client_to_the_host_it_was_given(gw, ready):
    """Issue 23, finding 11: through the gateway, a trailing slash is an unknown path (no 307 to the Host header),
    and Open311 discovery advertises the gateway's public URL, not the address svc_services was reached at."""
    evil = {"Host": "evil.example"}
    for path in ("/services/v1/catalogue/items/", "/exchange/v1/catalogue/", "/open311/v2/services.json/"):
        r = await gw.get(path, headers={**evil, "Authorization": f"Bearer {token(gw, 'ops', subject='ops1')}"})
        assert r.status_code == 404 and "location" not in r.headers, (path, r.status_code, r.headers)
    r = await gw.get("/open311/v2/discovery.json", headers=evil)
    settings = ready.app.state.settings
    assert r.json()["endpoints"][0]["url"] == (settings.public_url or settings.gateway_url).rstrip("/") + "/open311/v2/"
    assert "evil.example" not in r.text


@pytest.mark.parametrize("method, path, fmt", [
    ("GET", "/open311/v2/media/%0A.jpg", "json"),            # a line break: the forward route does not match it
    ("GET", "/open311/v2/requests/a%0Ab.xml", "xml"),
    ("POST", "/open311/v2/requests/%0A.json", "json"),
])
async def test_an_open311_path_the_gateway_cannot_route_is_a_georeport_404(gw, method, path, fmt):
    r = await gw.request(method, path, headers={"Accept-Language": "en"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json" if fmt == "json" else "text/xml")
    if fmt == "json":
        assert r.json() == [{"code": 404, "description": "Not found"}], r.text
    else:
        assert [(e.findtext("code"), e.findtext("description"))
                for e in ET.fromstring(r.content).findall("error")] == [("404", "Not found")]
    # elsewhere the gateway's own refusal stays problem+json
    r = await gw.get("/services/v1/a%0Ab")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("headers, fmt", [({"Content-Type": "application/xml"}, "json"), ({"Content-Type": "text/plain"}, "xml")])
async def test_a_body_of_no_type_the_platform_takes_is_a_georeport_415(gw, headers, fmt):
    """The middleware's refusal of a body's media type (before any route) is Open311's error list under /open311/,
    naming what the POST takes: its form and multipart bodies (JSON as well); elsewhere JSON only."""
    r = await gw.post(f"/open311/v2/requests.{fmt}", content=b"service_code=x", headers=headers)
    assert r.status_code == 415
    assert r.headers["content-type"].startswith("application/json" if fmt == "json" else "text/xml")
    if fmt == "json":
        (error,) = r.json()
        code, description = error["code"], error["description"]
    else:
        (error,) = ET.fromstring(r.content).findall("error")
        code, description = int(error.findtext("code")), error.findtext("description")
    assert code == 415
    assert description == "请以 application/x-www-form-urlencoded、multipart/form-data 或 application/json 提交请求体"
    r = await gw.post(f"/open311/v2/requests.{fmt}", content=b"x", headers={**headers, "Accept-Language": "en"})
    assert "Send the body as application/x-www-form-urlencoded, multipart/form-data or application/json" in r.text
    r = await gw.post("/services/v1/requests", content=b"x", headers=headers)
    assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == "请以 application/json 提交请求体"


async def test_a_form_post_to_a_path_of_no_format_is_a_georeport_404(gw):
    """A form body posted where no Open311 document is (a format that is none): read once, refused in its format."""
    key = token(gw, "resident", subject="resident1", scopes=[f"person:{P1}"])
    r = await gw.post("/open311/v2/requests.yaml", data={"service_code": "YL-ZC-001", "api_key": key})
    assert r.status_code == 404, r.text
    assert [e["code"] for e in r.json()] == [404]
