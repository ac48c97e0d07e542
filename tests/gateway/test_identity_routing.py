"""Gateway: token issuance, JWKS, member revocation, forwarding with headers, upstream failures, docs."""
from __future__ import annotations

import shutil
from contextlib import AsyncExitStack

import httpx
import pytest

from common.keys import jwks_document, load_signing_keys
from tests.conftest import migrate_database, start_service

PASSWORD = "pw-for-tests"


@pytest.fixture
async def platform(db_url, tmp_path, backend, gateway_keys_dir, sqlite_template, residents_template):
    """A gateway (own database) in front of an in-process svc_residents; department upstream is down."""
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    # The gateway gets the fresh test database; svc_residents a SQLite file of its own.
    if backend == "sqlite":  # a copy of a database migrated once per session
        shutil.copy(sqlite_template, db_url.split("///", 1)[1])
    else:
        await migrate_database("gateway", db_url)
    shutil.copy(residents_template, tmp_path / "res.db")
    settings = GatewaySettings(database_url=db_url, keys_dir=gateway_keys_dir, outbox_relay_enabled=False,
                               breaker_failures=2, breaker_reset_seconds=60, upstream_retries=0)
    async with AsyncExitStack() as stack:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        # The gateway's keys exist before it starts, so the service can trust its JWKS from the outset.
        jwks = jwks_document(load_signing_keys(settings.keys_dir))
        residents = await start_service(stack, "svc_residents", f"sqlite+aiosqlite:///{tmp_path}/res.db", jwks)
        gw = create_app(settings, transports={"departments": httpx.MockTransport(refuse),
                                              "residents": httpx.ASGITransport(app=residents.app)})
        await stack.enter_async_context(gw.router.lifespan_context(gw))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw"))
        client.app = gw
        await _seed(gw)
        yield client


async def _seed(app):
    from gateway.exchange.models import Grant
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import Member, User

    now = app.state.clock.now()
    async with app.state.db.session() as s, s.begin():
        s.add(Member(code="portal", name="居民端", kind="app", role="system", scopes=[], secret_hash=None,
                     status="active", created_at=now))
        s.add(Member(code="dept-mz", name="民政局", kind="department", role="dept_staff", scopes=["dept:minzheng"],
                     secret_hash=hash_secret("s3cret"), status="active", created_at=now))
        s.add(Member(code="ops-console", name="运维台", kind="app", role="ops", scopes=[],
                     secret_hash=hash_secret("ops-secret"), status="active", created_at=now))
        await s.flush()
        s.add(User(username="staff1", display_name="周敏", password_hash=hash_secret(PASSWORD),
                   role="community_staff", scopes=["community:110105001001"], member_code="portal",
                   status="active", created_at=now))
        # the ops console may query the 民政 emulator (department routes need a live grant)
        grant = Grant(id="g-ops-mz", resource="minzheng.assistance", owner="dept-minzheng", consumer="ops-console",
                      applicant_user="ops-console", purpose="运维联调", status="approved", fields=None,
                      applied_at=now, check_due_at=now, reply_due_at=now, decided_at=now, version=1)
        s.add(grant)
    app.state.exchange_policy.put_grant(grant)


async def _token(client, **form) -> httpx.Response:
    return await client.post("/auth/v1/token", data=form)


async def test_client_credentials_and_password_grants(platform):
    r = await _token(platform, grant_type="client_credentials", client_id="dept-mz", client_secret="s3cret")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["role"] == "dept_staff" and body["member"] == "dept-mz"
    r = await _token(platform, grant_type="password", username="staff1", password=PASSWORD)
    assert r.status_code == 200 and r.json()["role"] == "community_staff" and r.json()["member"] == "portal"


@pytest.mark.parametrize("form,code", [
    ({"grant_type": "client_credentials", "client_id": "dept-mz", "client_secret": "wrong"}, "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}, "invalid_client"),
    ({"grant_type": "password", "username": "staff1", "password": "nope"}, "invalid_grant"),
    ({"grant_type": "client_credentials", "client_id": "dept-mz"}, "invalid_request"),
])
async def test_bad_credentials_are_problems(platform, form, code):
    r = await _token(platform, **form)
    assert r.status_code in (400, 401)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code and r.json()["error"] == code


async def test_bad_grant_type_is_422_naming_field(platform):
    r = await _token(platform, grant_type="magic")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "grant_type"


async def test_jwks_and_forwarding_with_headers(platform):
    jwks = (await platform.get("/.well-known/jwks.json")).json()
    assert jwks["keys"][0]["kty"] == "RSA" and "d" not in jwks["keys"][0]
    tok = (await _token(platform, grant_type="client_credentials", client_id="ops-console",
                        client_secret="ops-secret")).json()["access_token"]
    h = {"Authorization": f"Bearer {tok}", "X-Request-Id": "req-42"}
    r = await platform.post("/residents/v1/places", json={"code": "110105", "level": "district", "name": "朝阳区"},
                            headers=h)
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"] == "req-42" and r.headers["x-onenet-service"] == "residents"
    r = await platform.get("/residents/v1/places/110105", headers=h)
    assert r.status_code == 200 and r.json()["name"] == "朝阳区"


async def test_no_token_is_refused_at_the_gateway(platform):
    r = await platform.get("/residents/v1/places")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    r = await platform.get("/nosuchservice/v1/x")
    assert r.status_code == 404


async def test_revocation_takes_effect_at_once(platform):
    ops = (await _token(platform, grant_type="client_credentials", client_id="ops-console",
                        client_secret="ops-secret")).json()["access_token"]
    dept = (await _token(platform, grant_type="client_credentials", client_id="dept-mz",
                         client_secret="s3cret")).json()["access_token"]
    r = await platform.get("/residents/v1/places", headers={"Authorization": f"Bearer {dept}"})
    assert r.status_code == 200
    r = await platform.post("/exchange/v1/members/dept-mz/revoke", headers={"Authorization": f"Bearer {ops}"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = await platform.get("/residents/v1/places", headers={"Authorization": f"Bearer {dept}"})
    assert r.status_code == 403 and r.json()["code"] == "member_revoked"
    r = await _token(platform, grant_type="client_credentials", client_id="dept-mz", client_secret="s3cret")
    assert r.status_code == 401


async def test_rotate_secret(platform):
    ops = (await _token(platform, grant_type="client_credentials", client_id="ops-console",
                        client_secret="ops-secret")).json()["access_token"]
    r = await platform.post("/exchange/v1/members/dept-mz/rotate-secret", headers={"Authorization": f"Bearer {ops}"})
    new_secret = r.json()["client_secret"]
    assert (await _token(platform, grant_type="client_credentials", client_id="dept-mz",
                         client_secret="s3cret")).status_code == 401
    assert (await _token(platform, grant_type="client_credentials", client_id="dept-mz",
                         client_secret=new_secret)).status_code == 200


async def test_an_unknown_member_is_404_for_every_change(platform):
    ops = (await _token(platform, grant_type="client_credentials", client_id="ops-console",
                        client_secret="ops-secret")).json()["access_token"]
    auth = {"Authorization": f"Bearer {ops}"}
    for r in (await platform.patch("/exchange/v1/members/no-such", headers=auth, json={"name": "x"}),
              await platform.post("/exchange/v1/members/no-such/rotate-secret", headers=auth),
              await platform.post("/exchange/v1/members/no-such/revoke", headers=auth)):
        assert (r.status_code, r.json()["code"]) == (404, "member.not_found"), r.text


async def test_upstream_down_gives_503_and_opens_breaker(platform):
    tok = (await _token(platform, grant_type="client_credentials", client_id="ops-console",
                        client_secret="ops-secret")).json()["access_token"]
    h = {"Authorization": f"Bearer {tok}"}
    for _ in range(3):
        r = await platform.get("/departments/minzheng/v1/queries", headers=h)
        assert r.status_code == 503 and r.json()["code"] == "upstream_unavailable"
        assert r.headers["retry-after"]
    assert platform.app.state.forwarder.upstreams["departments"].breaker.state == "open"


async def test_aggregated_openapi(platform):
    doc = (await platform.get("/openapi.json")).json()
    assert "/auth/v1/token" in doc["paths"] and "/residents/v1/places" in doc["paths"]
    assert (await platform.get("/docs")).status_code == 200
