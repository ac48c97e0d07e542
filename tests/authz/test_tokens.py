"""Missing, expired, forged tokens and a revoked member, on every endpoint of every service and of the gateway's
own /exchange/v1, through the gateway; and missing / expired / forged straight at each service (bypassing the
gateway gains nothing). Every refusal is problem+json."""
from __future__ import annotations

import time

import jwt
import pytest

from common.keys import SigningKey
from tests.authz.test_matrix import PUBLIC, endpoints, fill
from tests.inprocess import SERVICES

OPEN311_PUBLIC_READS = "GET /open311/"  # GeoReport v2: anonymous public reads by design
# The dashboard and the printable report are browser pages: without a token they answer 401 with a sign-in page.


def _token(pt, *, key=None, ttl=300, member="portal", role="resident"):
    issuer = pt.platform.gateway.state.token_issuer
    now = int(time.time())
    k = key or issuer.active
    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "resident1", "member": member, "role": role,
              "scopes": [], "iat": now - 1000, "exp": now + ttl, "jti": "t"}
    return jwt.encode(claims, k.private_key, algorithm="RS256", headers={"kid": k.kid})


@pytest.fixture(scope="module")
def bad_tokens(pt):
    ops = pt.platform.headers("ops1")
    r = pt.request("POST", "/exchange/v1/members", headers=ops, json={
        "code": "revoked-app", "name": "停用测试应用", "kind": "app", "role": "system", "scopes": []})
    assert r.status_code == 201, r.text
    assert pt.request("POST", "/exchange/v1/members/revoked-app/revoke", headers=ops).status_code == 200
    forger = SigningKey.generate()
    forged_same_kid = SigningKey(kid=pt.platform.gateway.state.token_issuer.active.kid,  # claims the gateway's kid
                                 private_key=SigningKey.generate().private_key)
    return {
        "missing": None,
        "expired": _token(pt, ttl=-600),
        "forged": _token(pt, key=forger),
        "forged-kid": _token(pt, key=forged_same_kid),
        "garbage": "not-a-jwt",
        "revoked": pt.platform.token("ops1", member="revoked-app"),
    }


EXPECT = {"missing": 401, "expired": 401, "forged": 401, "forged-kid": 401, "garbage": 401, "revoked": 403}


def test_every_endpoint_refuses_bad_tokens_through_the_gateway(pt, ids, bad_tokens):
    problems = []
    for endpoint in endpoints(pt):
        if endpoint in PUBLIC or endpoint.startswith(OPEN311_PUBLIC_READS):
            continue
        method, path = endpoint.split(" ", 1)
        url = fill(path, ids)
        for name, token in bad_tokens.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = pt.request(method, url, headers=headers, **({} if method in ("GET", "DELETE") else {"json": {}}))
            want = EXPECT[name]
            if endpoint.startswith("POST /open311/") and name != "revoked":
                want = r.status_code if r.status_code in (400, 401, 403) else want  # api_key governs Open311 POST
            if r.status_code != want:
                problems.append(f"{endpoint} with {name} token: {r.status_code}, want {want}")
            elif not endpoint.startswith(("POST /open311/", "GET /metrics/v1/dashboard", "GET /metrics/v1/report")) and \
                    not r.headers.get("content-type", "").startswith("application/problem+json"):
                problems.append(f"{endpoint} with {name} token: not problem+json")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", SERVICES)
def test_each_service_refuses_bad_tokens_directly(pt, package, bad_tokens):
    """Straight at the service (no gateway): the same refusals, so bypassing the gateway gains nothing."""
    import httpx

    app = pt.platform.apps[package]
    paths = [p for p, item in app.openapi()["paths"].items()
             if "get" in item and "{" not in p and p not in ("/healthz", "/readyz", "/metrics")
             and not p.startswith("/open311/")]
    assert paths

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as c:
            out = []
            for p in paths:
                for name in ("missing", "expired", "forged", "forged-kid", "garbage"):
                    token = bad_tokens[name]
                    r = await c.get(p, headers={"Authorization": f"Bearer {token}"} if token else {})
                    if r.status_code != 401:
                        out.append(f"{package} GET {p} with {name} token: {r.status_code}")
            return out

    problems = pt.run(go())
    assert not problems, "\n".join(problems)
