"""The catalogue derived from the services' OpenAPI plus annotations (ADR 0005), with mock upstreams."""
from __future__ import annotations

import httpx

from gateway.exchange.catalogue_data import BUILTIN_RESOURCES
from gateway.exchange.derive import derive_catalogue, prefix_matches, response_fields

PERSON = {"type": "object", "properties": {
    "id": {"type": "string", "title": "Id"}, "name": {"type": "string", "title": "Name"},
    "birth_date": {"type": "string", "title": "出生日期"},
    "blood_type": {"type": "string", "title": "血型"},
    "address": {"$ref": "#/components/schemas/Address"}}}
RESIDENTS_DOC = {
    "openapi": "3.1.0", "info": {"title": "residents", "version": "1"},
    "paths": {
        "/residents/v1/persons": {
            "get": {"summary": "居民列表", "responses": {"200": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Page_PersonOut_"}}}}}},
            "post": {"summary": "登记居民", "responses": {"201": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/PersonOut"}}}}}}},
        "/residents/v1/persons/{person_id}": {
            "patch": {"summary": "修改", "responses": {"200": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/PersonOut"}}}}}}},
        "/residents/v1/households": {"get": {"summary": "户列表", "responses": {}}},
    },
    "components": {"schemas": {
        "PersonOut": PERSON,
        "Address": {"type": "object", "properties": {"street": {"type": "string"}, "room": {"type": "string"}}},
        "Page_PersonOut_": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/PersonOut"}},
            "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}}},
}
MATCHING_DOC = {
    "openapi": "3.1.0", "info": {"title": "matching", "version": "1"},
    "paths": {"/matching/v1/providers": {"get": {
        "summary": "供给主体", "x-onenet-resource": {
            "code": "matching.providers", "owner": "svc_matching", "name": "供给主体名录",
            "sharing_class": "conditional", "path_prefix": "/matching/v1/providers",
            "fields": [{"path": "contact_phone", "label": "联系电话", "grade": "important", "personal": True,
                        "sensitive": False, "mask": "phone"}]},
        "responses": {"200": {"content": {"application/json": {"schema": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"},
                                             "contact_phone": {"type": "string"}}}}}}}}}}},
}


def test_prefix_matching_treats_template_segments_as_wildcards():
    assert prefix_matches("/departments/renshe/v1/", "/departments/{code}/v1/queries")
    assert prefix_matches("/residents/v1/persons", "/residents/v1/persons/{person_id}")
    assert not prefix_matches("/residents/v1/persons", "/residents/v1/households")
    assert not prefix_matches("/departments/renshe/v1/", "/departments/v1")


def test_response_fields_look_into_pages_refs_and_nested_objects():
    op = RESIDENTS_DOC["paths"]["/residents/v1/persons"]["get"]
    fields = response_fields(op, RESIDENTS_DOC["components"]["schemas"])
    assert [p for p, _ in fields] == ["id", "name", "birth_date", "blood_type", "address.street",
                                      "address.room"]


def test_derivation_merges_annotations_with_openapi():
    d = derive_catalogue(BUILTIN_RESOURCES, {"residents": RESIDENTS_DOC, "matching": MATCHING_DOC,
                                             "services": None, "metrics": None, "departments": None})
    by = {r["code"]: r for r in d.resources}
    persons = by["residents.persons"]
    assert persons["methods"] == ["GET", "PATCH", "POST"]
    fields = {f["path"]: f for f in persons["fields"]}
    assert fields["id_number"]["sensitive"] and fields["id_number"]["grade"] == "core"  # annotation kept
    assert fields["name"]["mask"] == "name"
    # annotated person fields keep their grade; a field nobody annotated is graded on the strict side
    assert fields["birth_date"]["personal"] and fields["birth_date"]["grade"] == "important"
    assert fields["blood_type"] == {"path": "blood_type", "label": "血型", "grade": "important", "personal": True,
                                    "sensitive": False, "mask": "generic", "reviewed": False}
    assert fields["address.street"]["personal"] and not fields["address.street"]["reviewed"]
    assert by["residents.households"]["methods"] == ["GET"]
    assert by["matching.providers"]["sharing_class"] == "conditional" and by["matching.providers"]["service"] == "matching"
    assert {f["path"] for f in by["matching.providers"]["fields"]} == {"contact_phone", "name"}
    assert "matching.resources" in d.unmatched  # its service answered without that operation
    assert d.missing == ["departments", "metrics", "services"] and d.from_extension == ["matching.providers"]
    assert by["services.catalogue"] == next(r for r in BUILTIN_RESOURCES if r["code"] == "services.catalogue")


async def test_refresh_endpoint_derives_the_catalogue_from_the_upstreams(exchange):
    x = exchange
    docs = {"residents": RESIDENTS_DOC, "matching": MATCHING_DOC}

    def mock(name):
        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/openapi.json" and name in docs:
                return httpx.Response(200, json=docs[name])
            return httpx.Response(503)
        return httpx.AsyncClient(base_url=f"http://{name}", transport=httpx.MockTransport(handler))

    for name, upstream in x.app.state.openapi_aggregate.upstreams.items():
        if name != "departments":  # the department emulators answer with their real OpenAPI
            await upstream.client.aclose()
            upstream.client = mock(name)
    ops = x.h("ops-console", role="ops")
    assert (await x.client.post("/exchange/v1/catalogue/refresh", headers=x.h("community-xf"))).status_code == 403
    r = await x.client.post("/exchange/v1/catalogue/refresh", headers=ops)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["answered"] == ["departments", "matching", "residents"]
    assert "services" in report["missing"] and report["added"] == ["matching.providers"]
    assert "residents.persons" in report["changed"]
    r = await x.client.get("/exchange/v1/catalogue/residents.persons", headers=x.h("community-xf"))
    assert "birth_date" in {f["path"] for f in r.json()["fields"]} and r.json()["methods"] == ["GET", "PATCH", "POST"]
    r = await x.client.get("/exchange/v1/catalogue/renshe.insurance", headers=x.h("community-xf"))
    assert r.json()["methods"] == ["POST"] and r.json()["sharing_class"] == "unconditional"
    # the new resource is live in the policy at once: a call without a grant is refused for it
    assert x.app.state.exchange_policy.resolve("/matching/v1/providers").code == "matching.providers"
    # refreshing again changes nothing
    r = await x.client.post("/exchange/v1/catalogue/refresh", headers=ops)
    assert r.json()["added"] == [] and r.json()["changed"] == []
