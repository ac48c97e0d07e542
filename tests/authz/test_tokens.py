"""Missing, expired, forged tokens and a revoked member, on every endpoint of every service and of the gateway's
own /exchange/v1, through the gateway. Straight at a service or the department emulators (around the gateway)
every call is refused, whoever's token it carries, valid or a revoked member's, unless the gateway's assertion
on that very call comes with it (ADR 0013); with the assertion the service still checks the token itself. Every
refusal is problem+json."""
from __future__ import annotations

import re
import time

import httpx
import jwt
import pytest

from common.assertion import AssertionAuth, GatewayAssertion
from common.keys import SigningKey
from tests.authz.test_matrix import PUBLIC, endpoints, fill
from tests.conftest import TEST_ASSERTION_KEY, gateway_auth, unsigned_client
from tests.inprocess import SERVICES

OPS_PATHS = ("/healthz", "/readyz", "/metrics")

OPEN311_PUBLIC_READS = "GET /open311/"  # GeoReport v2: anonymous public reads by design
# 公示: published notices, read at kiosks and on the app's public pages without signing in (ADR 0018)
PUBLIC_NOTICES = {"GET /services/v1/public/notices", "GET /services/v1/public/notices/{notice_id}"}
ANONYMOUS = {"POST /auth/v1/revoke", "POST /auth/v1/phone/codes"}  # phone codes: asked for before any account (issue 25)  # RFC 7009: whoever holds a token revokes it, 200 whatever it is (ADR 0015)
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
        if endpoint in PUBLIC or endpoint in ANONYMOUS or endpoint in PUBLIC_NOTICES or \
                endpoint.startswith(OPEN311_PUBLIC_READS):
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
def test_each_service_refuses_bad_tokens_even_with_the_gateways_assertion(pt, package, bad_tokens):
    """Signed as the gateway would sign them: the service still checks the token itself (401)."""
    app = pt.platform.apps[package]
    paths = [p for p, item in app.openapi()["paths"].items()
             if "get" in item and "{" not in p and p not in OPS_PATHS
             and not p.startswith(("/open311/", "/services/v1/public/"))]  # public reads check no token
    assert paths

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc",
                                     auth=gateway_auth()) as c:
            out = []
            for p in paths:
                for name in ("missing", "expired", "forged", "forged-kid", "garbage"):
                    token = bad_tokens[name]
                    r = await c.get(p, headers={"Authorization": f"Bearer {token}"} if token else {})
                    if r.status_code != 401 or _refused_around_the_gateway(r):  # the token's own refusal
                        out.append(f"{package} GET {p} with {name} token: {r.status_code} {r.text[:100]}")
            return out

    problems = pt.run(go())
    assert not problems, "\n".join(problems)


def _operations(app) -> list[tuple[str, str]]:
    """Every operation of an app but the ops endpoints, path parameters filled with anything (the call is
    refused before any route is matched)."""
    return [(m.upper(), re.sub(r"\{[^}]+\}", "x", p)) for p, item in app.openapi()["paths"].items()
            if p not in OPS_PATHS for m in item if m in ("get", "post", "put", "patch", "delete")]


def _refused_around_the_gateway(r: httpx.Response) -> bool:
    return (r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
            and r.json()["code"] == "not_through_gateway")


@pytest.mark.parametrize("package", [*SERVICES, "departments"])
def test_straight_at_a_service_every_call_is_refused_whoever_calls(pt, package, bad_tokens):
    """Around the gateway: ops, a community worker and a revoked member's unexpired token, each with a token the
    service would take, on every operation: 401 not_through_gateway (no revocation, grant, rate limit or message
    log would hold for it). The department emulators answer only calls that came through the exchange."""
    app = pt.platform.apps[package]
    operations = _operations(app)
    assert operations
    tokens = {"ops1": pt.platform.headers("ops1"), "staff1": pt.platform.headers("staff1"),
              "revoked": {"Authorization": f"Bearer {bad_tokens['revoked']}"}}

    async def go():
        out = []
        async with unsigned_client(app) as c:
            for method, path in operations:
                for name, headers in tokens.items():
                    r = await c.request(method, path, headers=headers,
                                        **({} if method in ("GET", "DELETE") else {"json": {}}))
                    if not _refused_around_the_gateway(r):
                        out.append(f"{package} {method} {path} as {name}: {r.status_code} {r.text[:100]}")
            r = await c.get("/healthz")  # probes stay outside
            if r.status_code != 200:
                out.append(f"{package} /healthz: {r.status_code}")
        return out

    problems = pt.run(go())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", [*SERVICES, "departments"])
def test_an_assertion_for_another_call_or_out_of_time_is_refused(pt, package, bad_tokens):
    """The gateway's assertion holds for the one call it was made for, within 30 s of the service's clock: made
    for another path, method or token, with another key, 31 s old or a minute ahead, or malformed, it is refused."""
    app = pt.platform.apps[package]
    method, path = next((m, p) for m, p in _operations(app) if m == "GET")
    token = pt.platform.headers("ops1")["Authorization"].encode()
    signer = GatewayAssertion(TEST_ASSERTION_KEY)
    now = int(signer.clock.timestamp())

    def made(*, m: str = method, p: str = path, auth: bytes = token, at: int = now, key=signer) -> str:
        return key.sign(m, p.encode(), b"", auth, b"rid-1", at=at).decode()

    cases = {
        "another path": made(p=path + "-other"),
        "another method": made(m="DELETE"),
        "another token": made(auth=pt.platform.headers("staff1")["Authorization"].encode()),
        "revoked member's token": made(auth=f"Bearer {bad_tokens['revoked']}".encode()),
        "another key": made(key=GatewayAssertion("another-upstreams-key-0001")),
        "31 s old": made(at=now - 31),
        "a minute ahead": made(at=now + 60),  # not 31 s: the calls before it take time on a loaded machine
        "malformed": "v1.abc.def",
        "another version": made().replace("v1.", "v2.", 1),
    }

    async def go():
        out = []
        async with unsigned_client(app) as c:
            for name, value in cases.items():
                r = await c.get(path, headers={"Authorization": token.decode(), "X-Request-Id": "rid-1",
                                               "X-OneNet-Assertion": value, "Accept-Language": "en"})
                if not _refused_around_the_gateway(r) or "gateway" not in r.json()["detail"]:
                    out.append(f"{package} GET {path} with an assertion for {name}: {r.status_code} {r.text[:100]}")
            r = await c.get(path, headers={"Authorization": token.decode(), "X-Request-Id": "rid-1",
                                           "X-OneNet-Assertion": made(at=now - 25)})
            if r.status_code == 401:  # the very call, within the skew: the service takes it
                out.append(f"{package} GET {path} with its own assertion: {r.status_code} {r.text[:100]}")
        return out

    problems = pt.run(go())
    assert not problems, "\n".join(problems)


def test_a_service_without_a_key_refuses_every_call(pt):
    """A service not given a key refuses everything but its probes (it never answers unguarded)."""
    app = pt.platform.apps["svc_matching"]
    saved, app.state.gateway_assertion = app.state.gateway_assertion, None

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc",
                                     auth=AssertionAuth(GatewayAssertion(TEST_ASSERTION_KEY))) as c:
            return (await c.get("/matching/v1/resources", headers=pt.platform.headers("ops1")),
                    await c.get("/readyz"))

    try:
        refused, ready = pt.run(go())
    finally:
        app.state.gateway_assertion = saved
    assert _refused_around_the_gateway(refused) and "未配置" in refused.json()["detail"], refused.text
    assert ready.status_code == 200
