"""X-Road metadata services for REST (nordic-institute/X-Road doc/Protocols/
pr-mrest_x-road_service_metadata_protocol_for_rest.md, and pr-meta_x-road_service_metadata_protocol.md for
listClients), each rule tested as the document states it (quoted in each test)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.gateway.test_xroad import CLIENT, _grant

BASE = "/r1/CN-ONENET/GOV/dept-minzheng/assistance"
NS = {"id": "http://x-road.eu/xsd/identifiers", "xr": "http://x-road.eu/xsd/xroad.xsd"}


async def test_list_clients_is_xml_unless_json_is_asked_for(exchange):
    """PR-META §2 "If the header value is application/json, the Security Server must produce an
    application/json response ... Otherwise, Security Server MUST respond with content-type text/xml and the
    response MUST contain the clientList XML element defined in Annex A"; Annex A: `member` elements of `id`
    (objectType, xRoadInstance, memberClass, memberCode, subsystemCode), `name`, `subsystemName`."""
    x = exchange
    h = x.h("community-xf", **{"X-Road-Client": CLIENT})
    for path in ("/r1/listClients", "/listClients"):
        r = await x.client.get(path, headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "text/xml; charset=utf-8"
        root = ET.fromstring(r.content)
        assert root.tag == "{http://x-road.eu/xsd/xroad.xsd}clientList"
        subsystems = [(m.find("xr:id", NS).findtext("id:memberCode", namespaces=NS),
                       m.find("xr:id", NS).findtext("id:subsystemCode", namespaces=NS))
                      for m in root.findall("xr:member", NS)
                      if m.find("xr:id", NS).get("{http://x-road.eu/xsd/identifiers}objectType") == "SUBSYSTEM"]
        assert ("dept-minzheng", "assistance") in subsystems
        members = [m.findtext("xr:name", namespaces=NS) for m in root.findall("xr:member", NS)]
        assert "区民政局" in members
    r = await x.client.get("/r1/listClients", headers={**h, "Accept": "application/json"})
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    ids = [m["id"] for m in r.json()["member"]]
    assert {"object_type": "SUBSYSTEM", "xroad_instance": "CN-ONENET", "member_class": "GOV",
            "member_code": "dept-minzheng", "subsystem_code": "assistance"} in ids
    # "it is possible to retrieve a list of clients in other, federated X-Road instances": none known here
    r = await x.client.get("/r1/listClients", params={"xRoadInstance": "FI"},
                           headers={**h, "Accept": "application/json"})
    assert r.json() == {"member": []}


async def test_list_and_allowed_methods_carry_endpoints_and_service_type(exchange):
    """PR-MREST §4 "listMethods lists all REST services and service endpoints offered by a service provider";
    "allowedMethods lists all REST services and service endpoints offered by a service provider that the caller
    has permission to invoke"; "The response SHALL NOT contain names of the metainfo services"; Annex A:
    `serviceType`, `endpointList` of `{method, path}`; Annex B.1 the JSON spelling (`service_type`,
    `endpoint_list`, wildcard segments as `*`)."""
    x = exchange
    h = x.h("community-xf", **{"X-Road-Client": CLIENT})
    r = await x.client.get(f"{BASE}/listMethods", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    [service] = r.json()["service"]
    assert service == {"object_type": "SERVICE", "xroad_instance": "CN-ONENET", "member_class": "GOV",
                       "member_code": "dept-minzheng", "subsystem_code": "assistance",
                       "service_code": "assistance-status", "service_type": "OPENAPI",
                       "endpoint_list": [{"method": "POST", "path": "/queries"}]}
    r = await x.client.get(f"{BASE}/allowedMethods", headers=h)
    assert r.json()["service"] == []
    await _grant(x)
    r = await x.client.get(f"{BASE}/allowedMethods", headers=h)
    assert r.json()["service"] == [service]
    # the endpoint listed is the one a client calls: service id + path
    r = await x.client.post(f"{BASE}/assistance-status/queries", json={"id_number": "110105194703210823"},
                            headers=h)
    assert r.status_code == 200
    # a provider whose description cannot be read now (svc_residents does not run here): plain REST, the
    # catalogue's methods on any path below the service
    r = await x.client.get("/r1/CN-ONENET/GOV/svc.residents/residents/listMethods", headers=h)
    assert {s["service_code"]: (s["service_type"], s["endpoint_list"]) for s in r.json()["service"]} == {
        "households": ("REST", [{"method": "GET", "path": "/*"}]),
        "persons": ("REST", [{"method": "GET", "path": "/*"}, {"method": "POST", "path": "/*"}])}


async def test_get_openapi_is_the_services_own_description(exchange):
    """PR-MREST §5 "The query parameters must contain serviceCode=xxx where xxx is the service code of the REST
    service we want to get the service description from"; "The body of the response MUST contain the OpenAPI
    service description of the REST service indicated by the query parameters": the department emulator's
    operation, relative to the service id (`/queries`, PR-REST §4.1 "[path] contains the relative path to the
    service to be called"), its request schema, nothing of the gateway's own API."""
    x = exchange
    h = x.h("community-xf", **{"X-Road-Client": CLIENT})
    r = await x.client.get(f"{BASE}/getOpenAPI", params={"serviceCode": "assistance-status"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    doc = r.json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"] == "低保特困状态"
    assert doc["info"]["x-onenet-resource"] == "minzheng.assistance"
    assert doc["servers"] == [{"url": "/r1/CN-ONENET/GOV/dept-minzheng/assistance/assistance-status"}]
    assert list(doc["paths"]) == ["/queries"] and list(doc["paths"]["/queries"]) == ["post"]
    op = doc["paths"]["/queries"]["post"]
    assert not [p for p in op.get("parameters", []) if p["in"] == "path"]   # {code} is fixed by the service
    schemas = doc["components"]["schemas"]
    assert "PersonQuery" in schemas and "ResourceOut" not in schemas and "GrantApply" not in schemas
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.rsplit("/", 1)[1] in schemas
    for code in ("hukou", "health"):   # every emulated department's service, each its own
        sub = {"hukou": ("dept-gongan", "hukou", "hukou-check"), "health": ("dept-weijian", "health",
                                                                          "health-summary")}[code]
        r = await x.client.get(f"/r1/CN-ONENET/GOV/{sub[0]}/{sub[1]}/getOpenAPI", params={"serviceCode": sub[2]},
                               headers=h)
        assert r.status_code == 200 and list(r.json()["paths"]) == ["/queries"]
    r = await x.client.get(f"{BASE}/getOpenAPI", params={"serviceCode": "nope"}, headers=h)
    assert (r.status_code, r.headers["x-road-error"]) == (500, "Server.ServerProxy.UnknownService")
