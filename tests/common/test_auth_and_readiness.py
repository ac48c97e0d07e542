"""JWKS fetching and key refresh, Principal scopes, readiness when migrations are behind, concurrent
Idempotency-Key retries."""
from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from common.auth import Principal, TokenVerifier, principal_from_claims
from common.errors import Problem
from common.keys import SigningKey, jwks_document
from common.settings import ServiceSettings


async def test_verifier_fetches_jwks_and_refreshes_on_new_kid(make_token, signing_key):
    second = SigningKey.generate()
    published = [signing_key]
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json=jwks_document(published))

    settings = ServiceSettings(jwks_url="http://gw/.well-known/jwks.json")
    verifier = TokenVerifier(settings, transport=httpx.MockTransport(handler))
    verifier.REFRESH_MIN_INTERVAL = 0
    claims = await verifier.verify(make_token("ops"))
    assert claims["role"] == "ops" and calls == ["/.well-known/jwks.json"]
    await verifier.verify(make_token("ops"))
    assert len(calls) == 1  # cached
    published.append(second)  # the gateway rotated its key
    claims = await verifier.verify(make_token("grid_worker", key=second))
    assert claims["role"] == "grid_worker" and len(calls) == 2


async def test_wrong_audience_or_issuer_refused(make_token):
    settings = ServiceSettings(jwks_url=None)

    verifier = TokenVerifier(settings, jwks=None)
    with pytest.raises(Problem) as exc:
        await verifier.verify(make_token("ops"))
    assert exc.value.status == 401
    with pytest.raises(Problem):
        await verifier.verify("a.b.c")


async def test_wrong_audience(make_token, jwks):
    verifier = TokenVerifier(ServiceSettings(jwks_url=None, jwt_audience="someone-else"), jwks=jwks)
    with pytest.raises(Problem) as exc:
        await verifier.verify(make_token("ops"))
    assert exc.value.code == "invalid_token"


@pytest.mark.parametrize("claims", [
    {"iat": "1700000000"}, {"iat": True}, {"exp": float("nan")}, {"exp": float("inf")}, {"nbf": None},
    {"nbf": True}, {"iat": "future"}, {"nbf": "future"}, {"exp": "past"},
], ids=["iat-string", "iat-bool", "exp-nan", "exp-inf", "nbf-null", "nbf-bool", "iat-ahead", "nbf-ahead",
        "expired"])
async def test_token_times_are_checked_as_pyjwt_would_on_the_verifiers_clock(claims, signing_key, jwks):
    """The verifier checks the times itself (against its clock, not PyJWT's read of the wall): each a finite number,
    `exp` not passed, `iat` and `nbf` not ahead, with PyJWT's 5 s leeway."""
    import json
    import uuid

    import jwt as pyjwt

    from common.clock import FrozenClock

    now = 1_800_000_000
    clock = FrozenClock(__import__("datetime").datetime.fromtimestamp(now, __import__("datetime").timezone.utc))
    verifier = TokenVerifier(ServiceSettings(jwks_url=None), jwks=jwks, clock=clock)
    base = {"iss": "onenet-gateway", "aud": "onenet", "sub": "u", "role": "ops", "member": "m",
            "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    relative = {"future": now + 60, "past": now - 60}
    body = {**base, **{k: relative.get(v, v) if isinstance(v, str) and v in relative else v
                       for k, v in claims.items()}}
    # PyJWT's encoder refuses NaN and infinities: sign the JSON by hand, as a forger with the key would
    header = {"alg": "RS256", "typ": "JWT", "kid": signing_key.kid}
    segments = [pyjwt.utils.base64url_encode(json.dumps(x, allow_nan=True).encode()) for x in (header, body)]
    signing_input = b".".join(segments)
    signature = pyjwt.algorithms.RSAAlgorithm(pyjwt.algorithms.RSAAlgorithm.SHA256).sign(
        signing_input, signing_key.private_key)
    token = b".".join([signing_input, pyjwt.utils.base64url_encode(signature)]).decode()
    with pytest.raises(Problem) as refused:
        await verifier.verify(token)
    assert refused.value.status == 401
    assert (await verifier.verify(pyjwt.encode(base, signing_key.private_key, algorithm="RS256",
                                               headers={"kid": signing_key.kid})))["sub"] == "u"


def test_principal_scopes_and_places():
    p = principal_from_claims({"sub": "u", "member": "portal", "role": "community_staff",
                               "scopes": ["community:110105001001"]})
    assert p.covers_place("110105001001002") and p.covers_place("110105001001")
    assert not p.covers_place("110105001002001") and not p.covers_place(None)
    proxy = Principal(member="kiosk", user="helper", role="proxy", acting_for="person-9")
    assert proxy.person_id == "person-9"
    resident = Principal(member="portal", user="r", role="resident", scopes=("person:p1", "household:h1"))
    assert resident.person_id == "p1" and resident.scope_values("household") == ["h1"]
    with pytest.raises(Problem):
        principal_from_claims({"sub": "u", "role": "emperor"})


async def test_readyz_reports_unmigrated_database(tmp_path, jwks):
    from svc_residents.app import create_app
    from svc_residents.settings import ResidentsSettings

    settings = ResidentsSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db", jwks_url=None,
                                 outbox_relay_enabled=False)
    app = create_app(settings, verifier=TokenVerifier(settings, jwks=jwks))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/readyz")
            assert r.status_code == 503 and "migrations" in r.json()["detail"]
            assert (await c.get("/healthz")).status_code == 200


async def test_concurrent_retries_with_one_idempotency_key_create_one(service_client, auth):
    client = await service_client("svc_residents")
    h = auth("ops")
    r = await client.post("/residents/v1/places", json={"code": "110105", "level": "district", "name": "朝阳区"},
                          headers=h)
    assert r.status_code == 201
    body = {"code": "110105001", "level": "street", "name": "和平街道", "parent_code": "110105"}
    results = await asyncio.gather(*(client.post("/residents/v1/places", json=body,
                                                 headers={**h, "Idempotency-Key": "kiosk-retry-1"})
                                     for _ in range(20)))
    assert {r.status_code for r in results} == {201}, [r.text for r in results if r.status_code != 201]
    assert sum(r.headers.get("idempotency-replayed") == "false" for r in results) == 1
    from svc_residents.models import OutboxEvent, Place

    async with client.app.state.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Place))).scalar() == 2
        assert (await s.execute(select(func.count()).select_from(OutboxEvent))).scalar() == 2
