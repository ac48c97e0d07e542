"""The OpenAPI document as a contract (issue 31, common/openapi_contract.py): every status an operation can
answer is declared with its media type, and an undeclared method is 405 with Allow, also on the gateway whose
catch-all forward route would otherwise answer 404."""
from __future__ import annotations

from common.openapi_contract import SHARED_PROBLEM_STATUSES, finish


def _ops(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, op


async def test_every_operation_declares_the_shared_statuses(exchange):
    x = exchange
    doc = (await x.client.get("/openapi.json")).json()
    seen = 0
    for path, method, op in _ops(doc):
        seen += 1
        if path.startswith("/r1/"):   # X-Road's faults: 400 and 500 only, its own body
            assert {s for s in op["responses"] if int(s) >= 400} == {"400", "500"}
            assert set(op["responses"]["400"]["content"]) == {"application/json", "text/xml"}
            continue
        for status in SHARED_PROBLEM_STATUSES:
            resp = op["responses"][str(status)]
            media = "application/json" if path.startswith("/open311/") else "application/problem+json"
            assert media in resp["content"], (method, path, status)
        assert "Allow" in op["responses"]["405"]["headers"]
        keyed = any(p["name"] == "Idempotency-Key" for p in op.get("parameters", ()))
        if method == "post" and "201" in op["responses"]:
            assert keyed <= ("Idempotency-Replayed" in op["responses"]["201"].get("headers", {})), path
            if "Idempotency-Replayed" in op["responses"]["201"].get("headers", {}):
                assert "200" not in op["responses"], path   # its replay is the 201 again (Open311's POST)
            else:
                assert op["responses"]["200"]["content"] == op["responses"]["201"]["content"], path
    assert seen > 30
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert finish(doc) == doc   # idempotent


async def test_an_undeclared_method_is_405_with_allow_on_the_gateways_own_paths(exchange):
    x = exchange
    h = x.h("ops-console")
    for method, path, allow in (("PUT", "/exchange/v1/catalogue", "GET"), ("DELETE", "/auth/v1/token", "POST"),
                                ("POST", "/.well-known/jwks.json", "GET")):
        r = await x.client.request(method, path, headers=h)
        assert r.status_code == 405, (method, path, r.status_code, r.text)
        assert r.headers["allow"] == allow and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "method_not_allowed"
    # declared methods and unknown paths are as before
    assert (await x.client.get("/exchange/v1/catalogue", headers=h)).status_code == 200
    assert (await x.client.put("/nothing/here", headers=h)).status_code == 404
