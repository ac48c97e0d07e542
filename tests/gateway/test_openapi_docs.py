"""The aggregated OpenAPI document declares the bearer (JWT) scheme for Swagger UI and carries examples."""
from __future__ import annotations

import pytest

from gateway.routing.openapi import SECURITY_SCHEME, example_for

METHODS = ("get", "post", "put", "patch", "delete")


def _without_examples(doc: dict) -> list[tuple[str, str, str]]:
    """JSON request bodies and 200 / 201 JSON answers that carry no example."""
    missing = []
    for path, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if not op:
                continue
            for media_type, media in (op.get("requestBody") or {}).get("content", {}).items():
                if "example" not in media and "examples" not in media:
                    missing.append((method, path, media_type))
            for status in ("200", "201"):
                media = (op.get("responses") or {}).get(status, {}).get("content", {}).get("application/json")
                if media and media.get("schema") and "example" not in media and "examples" not in media:
                    missing.append((method, path, status))
    return missing


@pytest.mark.parametrize("module", ["svc_services.app", "svc_residents.app", "svc_matching.app", "svc_metrics.app",
                                    "gateway.departments.app"])
def test_every_service_operation_gets_an_example(module):
    """Each service's own document, as the gateway merges it: every operation ends up with an example, written by
    the service or built from its schema. (The test below sees only the services its gateway fixture reaches; an
    answer without a model, like the KPI reads, gets none from its schema and must carry its own.)"""
    import importlib

    from gateway.routing.openapi import add_security_and_examples

    doc = add_security_and_examples(importlib.import_module(module).create_app().openapi())
    assert not _without_examples(doc)


async def test_bearer_scheme_public_operations_and_examples(exchange):
    x = exchange
    doc = (await x.client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"][SECURITY_SCHEME] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": doc["components"]["securitySchemes"][SECURITY_SCHEME]["description"]}
    assert doc["security"] == [{SECURITY_SCHEME: []}]
    paths = doc["paths"]
    assert paths["/auth/v1/token"]["post"]["security"] == []            # public: how a token is obtained
    assert paths["/.well-known/jwks.json"]["get"]["security"] == []
    assert "security" not in paths["/exchange/v1/grants"]["post"]       # the document-wide bearer applies
    assert "/departments/{code}/v1/queries" in paths                   # the emulators' operations are merged in
    missing = _without_examples(doc)
    assert not missing, missing
    token = paths["/auth/v1/token"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert token["example"]["grant_type"] == "client_credentials"
    grant = paths["/exchange/v1/grants"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert grant["resource"] == "minzheng.assistance" and grant["purpose"]
    query = paths["/departments/{code}/v1/queries"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert query["id_number"] == "11010519491231002X"
    docs = await x.client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text


def test_examples_follow_the_schema():
    components = {"P": {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string", "format": "date-time"}, "b": {"anyOf": [{"type": "null"}, {"$ref": "#/components/schemas/Q"}]},
        "c": {"type": "array", "items": {"type": "integer", "minimum": 3}}}},
        "Q": {"type": "string", "enum": ["x", "y"]}}
    assert example_for({"$ref": "#/components/schemas/P"}, components) == {
        "a": "2026-11-20T10:00:00+08:00", "b": "x", "c": [3]}
    assert example_for({"type": "string", "examples": ["e1"]}, {}) == "e1"
