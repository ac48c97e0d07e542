"""X-Road REST compatibility: addressing onto the catalogue, client header, X-Road headers, faults, metadata."""
from __future__ import annotations

import base64
import hashlib
import json

ID = "110105194703210823"
SVC = "/r1/CN-ONENET/GOV/dept-minzheng/assistance/assistance-status"
CLIENT = "CN-ONENET/GOV/community-xf/portal"


async def _grant(x):
    g = (await x.client.post("/exchange/v1/grants", json={"resource": "minzheng.assistance", "purpose": "核验"},
                             headers=x.h("community-xf"))).json()
    await x.client.post(f"/exchange/v1/grants/{g['id']}/approve", headers=x.h("dept-minzheng"),
                        json={"fields": ["data.dibao"], "expires_at": "2030-01-01T00:00:00Z"})


async def test_xroad_call_is_mapped_granted_masked_and_logged(exchange):
    x = exchange
    await _grant(x)
    body = json.dumps({"id_number": ID}).encode()
    r = await x.client.post(f"{SVC}/queries", content=body,
                            headers=x.h("community-xf", **{"X-Road-Client": CLIENT, "X-Road-Id": "xr-1",
                                                           "X-Road-UserId": "CN123", "X-Road-Issue": "ISSUE-7",
                                                           "Content-Type": "application/json"}))
    assert r.status_code == 200, r.text
    assert set(r.json()["data"]) == {"dibao"} and "id_number" not in r.json()
    assert r.headers["x-road-client"] == CLIENT and r.headers["x-road-id"] == "xr-1"
    assert r.headers["x-road-service"] == "CN-ONENET/GOV/dept-minzheng/assistance/assistance-status"
    assert r.headers["x-road-request-id"]
    assert r.headers["x-road-request-hash"] == base64.b64encode(hashlib.sha512(body).digest()).decode()
    assert "x-onenet-service" not in r.headers and "x-road-error" not in r.headers
    await x.app.state.audit.flush()
    log = (await x.client.get("/exchange/v1/log", headers=x.h("dept-minzheng"))).json()["items"]
    assert log[0]["path"] == "/departments/minzheng/v1/queries" and log[0]["purpose"] == "ISSUE-7"
    assert log[0]["user"].endswith(" / CN123")   # the person behind the department system's call


async def test_xroad_faults(exchange):
    x = exchange
    # the client header is required
    r = await x.client.post(f"{SVC}/queries", json={"id_number": ID}, headers=x.h("community-xf"))
    assert r.status_code == 400 and r.headers["x-road-error"] == "Client.BadRequest"
    assert set(r.json()) == {"type", "message", "detail"} and r.json()["type"] == "Client.BadRequest"
    # it must name the token's member
    r = await x.client.post(f"{SVC}/queries", json={"id_number": ID},
                            headers=x.h("community-ak", **{"X-Road-Client": CLIENT}))
    assert r.status_code == 403 and r.headers["x-road-error"] == "Client.Unauthorized"
    # no grant
    r = await x.client.post(f"{SVC}/queries", json={"id_number": ID},
                            headers=x.h("community-xf", **{"X-Road-Client": CLIENT}))
    assert r.status_code == 403 and r.headers["x-road-error"] == "Client.AccessDenied"
    # no token
    r = await x.client.post(f"{SVC}/queries", json={"id_number": ID}, headers={"X-Road-Client": CLIENT})
    assert r.status_code == 401 and r.headers["x-road-error"].startswith("Client.")
    # unknown service
    r = await x.client.get("/r1/CN-ONENET/GOV/dept-minzheng/assistance/nothing",
                           headers=x.h("community-xf", **{"X-Road-Client": CLIENT}))
    assert r.status_code == 404 and r.headers["x-road-error"] == "Server.ServerProxy.UnknownService"


async def test_xroad_upstream_down_is_a_server_fault(exchange):
    import httpx

    x = exchange
    await _grant(x)

    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    x.app.state.forwarder.upstreams["departments"].use(httpx.MockTransport(refuse))
    r = await x.client.post(f"{SVC}/queries", json={"id_number": ID},
                            headers=x.h("community-xf", **{"X-Road-Client": CLIENT}))
    assert r.status_code == 503 and r.headers["x-road-error"].startswith("Server.")


async def test_xroad_metadata_services(exchange):
    x = exchange
    h = x.h("community-xf", **{"X-Road-Client": CLIENT})
    r = await x.client.get("/r1/listClients", headers=h)
    ids = [m["id"] for m in r.json()["member"]]
    assert {"object_type": "SUBSYSTEM", "xroad_instance": "CN-ONENET", "member_class": "GOV",
            "member_code": "dept-minzheng", "subsystem_code": "assistance"} in ids
    base = "/r1/CN-ONENET/GOV/dept-minzheng/assistance"
    r = await x.client.get(f"{base}/listMethods", headers=h)
    assert [s["service_code"] for s in r.json()["service"]] == ["assistance-status"]
    r = await x.client.get(f"{base}/allowedMethods", headers=h)
    assert r.json()["service"] == []
    await _grant(x)
    r = await x.client.get(f"{base}/allowedMethods", headers=h)
    assert [s["service_code"] for s in r.json()["service"]] == ["assistance-status"]
    r = await x.client.get(f"{base}/getOpenAPI", params={"serviceCode": "assistance-status"}, headers=h)
    assert r.status_code == 200 and r.json()["info"]["description"] == "minzheng.assistance"
    r = await x.client.get(f"{base}/getOpenAPI", params={"serviceCode": "nope"}, headers=h)
    assert r.status_code == 404 and r.headers["x-road-error"] == "Server.ServerProxy.UnknownService"
