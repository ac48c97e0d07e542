"""Staff accounts, passwords, second factor and sessions through the gateway (issue 25, first half).

Written from the policy (gateway/accounts/policy.py): a community administrator manages its own community's
grid workers and (non-administrator) staff only; an account outside its place is 404, one above its role 403;
administrators (and ops, when configured) sign in with TOTP or a recovery code, else no token; refresh tokens
rotate and a replayed one ends its whole session; a signed-out session is refused at once, on the gateway's own
endpoints and before any forwarded call; every change and every refusal is in the account audit."""
from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select

PASSWORD = "Correct-Horse-Battery-9"
XF, AK = "110105001001", "110105001002"  # 幸福社区, 安康社区
SECRET = pyotp.random_base32()
pytestmark = pytest.mark.parametrize("exchange", [{"mfa_required_roles": ["ops"]}], indirect=True)


@pytest.fixture
async def gw(exchange):
    from gateway.accounts.models import TotpFactor
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import Member, User

    x = exchange
    now = x.clock.now()
    hashed = hash_secret(PASSWORD)
    users = [("admin_xf", "community_staff", [f"community:{XF}"], True),
             ("admin_ak", "community_staff", [f"community:{AK}"], True),
             ("admin_xf2", "community_staff", [f"community:{XF}"], True),
             ("admin_st", "street_staff", ["street:110105001"], True),
             ("staff_xf", "community_staff", [f"community:{XF}"], False),
             ("grid_ak", "grid_worker", [f"grid:{AK}001"], False),
             ("street_w", "street_staff", ["street:110105001"], False),
             ("admin_new", "community_staff", [f"community:{XF}"], True),
             ("ops_a", "ops", [], False)]
    async with x.app.state.db.session() as s, s.begin():
        s.add(Member(code="portal", name="居民端", kind="app", role="system", scopes=[], status="active",
                     created_at=now))
        await s.flush()
        for name, role, scopes, admin in users:
            s.add(User(username=name, display_name=name, password_hash=hashed, role=role, scopes=scopes, admin=admin,
                       member_code="portal", status="active", created_at=now))
        await s.flush()
        for name in ("admin_xf", "admin_ak", "admin_xf2", "admin_st"):
            s.add(TotpFactor(username=name, secret=SECRET, created_at=now, enabled_at=now))
    return x


def code(x) -> str:
    return pyotp.TOTP(SECRET).at(x.clock.now())


async def sign_in(x, username: str, password: str = PASSWORD, **extra):
    return await x.client.post("/auth/v1/token", data={"grant_type": "password", "username": username,
                                                       "password": password, **extra})


async def session_of(x, username: str, **extra) -> dict:
    if username.startswith("admin") and "recovery_code" not in extra:
        extra.setdefault("otp", code(x))
    r = await sign_in(x, username, **extra)
    assert r.status_code == 200, r.text
    x.clock.advance(seconds=31)  # the next sign-in with a TOTP code takes the next step's code
    body = r.json()
    body["h"] = {"Authorization": f"Bearer {body['access_token']}"}
    return body


def problem(r, status: int, code_: str, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code_, body
    if field:
        assert [e["field"] for e in body["errors"]] == [field], body
    assert "access_token" not in r.text
    return body


async def audit(x, **where) -> list:
    from gateway.accounts.models import AccountAudit

    async with x.app.state.db.session() as s:
        q = select(AccountAudit).order_by(AccountAudit.id)
        for k, v in where.items():
            q = q.where(getattr(AccountAudit, k) == v)
        return list((await s.execute(q)).scalars())


async def test_administrators_need_the_second_factor_and_sessions_rotate(gw):
    x = gw
    problem(await sign_in(x, "admin_xf"), 401, "mfa.required", "otp")
    problem(await sign_in(x, "admin_xf", otp="000000" if code(x) != "000000" else "111111"), 401,
            "mfa.invalid_code", "otp")
    ops = problem(await sign_in(x, "ops_a"), 403, "mfa.enrolment_required", "otp")  # ops too (configured)
    assert ops["enrolment_token"]
    r = await sign_in(x, "admin_xf", otp=code(x))
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["refresh_token"] and first["session_id"] and first["expires_in"] == 600
    problem(await sign_in(x, "admin_xf", otp=code(x)), 401, "mfa.code_reused", "otp")  # one use per code
    assert {a.code for a in await audit(x, action="session.sign_in", outcome="refused")} >= {
        "mfa.required", "mfa.invalid_code", "mfa.code_reused", "mfa.enrolment_required"}
    h = {"Authorization": f"Bearer {first['access_token']}"}
    me = (await x.client.get("/auth/v1/userinfo", headers=h)).json()
    assert me["sub"] == "admin_xf" and me["admin"] is True

    # rotation: each refresh token once; a replay ends the whole family, its access tokens at once
    r = await x.client.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["session_id"] == first["session_id"]
    problem(await x.client.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                        "refresh_token": first["refresh_token"]}),
            400, "refresh_token.reused", "refresh_token")
    problem(await x.client.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                        "refresh_token": second["refresh_token"]}),
            400, "session.revoked", "refresh_token")
    for token in (first["access_token"], second["access_token"]):
        hh = {"Authorization": f"Bearer {token}"}
        problem(await x.client.get("/auth/v1/userinfo", headers=hh), 401, "session_revoked")
        # before any forwarding: the services never see it
        problem(await x.client.get("/residents/v1/places", headers=hh), 401, "session_revoked")
    assert [a.after["reason"] for a in await audit(x, action="session.revoke")] == ["reuse"]
    problem(await x.client.post("/auth/v1/token", data={"grant_type": "refresh_token", "refresh_token": "x.y"}),
            400, "refresh_token.invalid", "refresh_token")


async def test_enrolment_recovery_codes_and_reset(gw):
    x = gw
    ticket = problem(await sign_in(x, "admin_new"), 403, "mfa.enrolment_required")["enrolment_token"]
    # the ticket is no access token
    problem(await x.client.get("/auth/v1/userinfo", headers={"Authorization": f"Bearer {ticket}"}), 401,
            "invalid_token")
    th = {"Authorization": f"Bearer {ticket}"}
    r = await x.client.post("/auth/v1/mfa/totp/enrol", headers=th)
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    assert r.json()["otpauth_uri"].startswith("otpauth://totp/")
    problem(await x.client.post("/auth/v1/mfa/totp/activate", headers=th, json={"code": "12345"}), 401,
            "mfa.invalid_code", "code")
    r = await x.client.post("/auth/v1/mfa/totp/activate", headers=th,
                            json={"code": pyotp.TOTP(secret).at(x.clock.now())})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    problem(await x.client.post("/auth/v1/mfa/totp/enrol", headers=th), 409, "mfa.already_enrolled")
    x.clock.advance(seconds=31)
    r = await sign_in(x, "admin_new", otp=pyotp.TOTP(secret).at(x.clock.now()))
    assert r.status_code == 200 and r.json()["access_token"]
    assert (await session_of(x, "admin_new", recovery_code=codes[0]))["access_token"]
    problem(await sign_in(x, "admin_new", recovery_code=codes[0]), 401, "mfa.invalid_recovery_code",
            "recovery_code")

    # the administrator of its place resets a lost authenticator: the sessions end, the next sign-in enrols
    street = await session_of(x, "admin_st")
    r = await x.client.post("/auth/v1/accounts/admin_new/reset-mfa", headers=street["h"])
    assert r.status_code == 200 and r.json()["mfa_enrolled"] is False, r.text
    problem(await sign_in(x, "admin_new"), 403, "mfa.enrolment_required")


async def test_community_administrator_manages_its_own_community_only(gw):
    x = gw
    xf = await session_of(x, "admin_xf")
    body = {"username": "grid-xf-02", "display_name": "李娜", "role": "grid_worker",
            "scopes": [f"grid:{XF}002"], "password": "Plenty-Long-Secret-42"}
    r = await x.client.post("/auth/v1/accounts", headers=xf["h"], json=body)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["admin"] is False
    created = await audit(x, action="account.create", outcome="done")
    assert created[-1].actor == "admin_xf" and created[-1].after["scopes"] == [f"grid:{XF}002"]
    assert "password" not in str(created[-1].after)
    # the new worker signs in (no second factor for a grid worker)
    assert (await session_of(x, "grid-xf-02", password="Plenty-Long-Secret-42"))["access_token"]

    refusals = [
        ({**body, "username": "grid-ak-9", "scopes": [f"grid:{AK}002"]}, 403, "scopes"),  # another community
        ({**body, "username": "admin-x", "role": "community_staff", "scopes": [f"community:{XF}"], "admin": True},
         403, "admin"),  # a peer administrator
        ({**body, "username": "st-x", "role": "street_staff", "scopes": ["street:110105001"]}, 403, "role"),
        ({**body, "username": "weak-1", "password": "password2026!"}, 422, "password"),  # common
        ({**body, "username": "weak-2", "password": "short1!"}, 422, "password"),
        ({**body, "username": "weak-3", "password": "my-weak-3-secret-x"}, 422, "password"),  # has username
        ({**body, "username": "badscope", "scopes": [f"community:{XF}"]}, 422, "scopes"),  # a grid worker's kind
    ]
    for sent, status, field in refusals:
        r = await x.client.post("/auth/v1/accounts", headers=xf["h"], json=sent)
        assert r.status_code == status and r.json()["errors"][0]["field"] == field, (sent, r.text)
    r = await x.client.post("/auth/v1/accounts", headers=xf["h"], json=body)
    problem(r, 409, "account.exists")
    async with x.app.state.db.session() as s:  # nothing half-created
        from gateway.members.models import User

        names = set((await s.execute(select(User.username))).scalars())
    assert not names & {"grid-ak-9", "admin-x", "st-x", "weak-1", "weak-2", "weak-3", "badscope"}
    refused = await audit(x, actor="admin_xf", action="account.create", outcome="refused")
    assert len(refused) == len(refusals) + 1

    # outside the place: as if unknown (404); inside but not below: 403
    for name in ("grid_ak", "admin_ak", "street_w", "admin_st", "nobody"):
        problem(await x.client.get(f"/auth/v1/accounts/{name}", headers=xf["h"]), 404, "account.not_found")
        problem(await x.client.patch(f"/auth/v1/accounts/{name}", headers=xf["h"],
                                     json={"version": 1, "status": "disabled"}), 404, "account.not_found")
    problem(await x.client.patch("/auth/v1/accounts/admin_xf2", headers=xf["h"],
                                 json={"version": 1, "status": "disabled"}), 403, "account.above_scope")
    listed = {a["username"] for a in (await x.client.get("/auth/v1/accounts", headers=xf["h"])).json()}
    assert listed == {"grid-xf-02", "staff_xf", "admin_xf2", "admin_new"}

    # a non-administrator manages nothing
    staff = await session_of(x, "staff_xf")
    problem(await x.client.get("/auth/v1/accounts", headers=staff["h"]), 403, "account.not_admin")
    problem(await x.client.get("/auth/v1/accounts/audit", headers=staff["h"]), 403, "account.not_admin")

    # disabling: a stale version is 409; then the worker's sessions end at once and sign-in says why
    worker = await session_of(x, "grid-xf-02", password="Plenty-Long-Secret-42")
    problem(await x.client.patch("/auth/v1/accounts/grid-xf-02", headers=xf["h"],
                                 json={"version": 7, "status": "disabled"}), 409, "version_conflict")
    r = await x.client.patch("/auth/v1/accounts/grid-xf-02", headers=xf["h"], json={"version": 1, "status": "disabled"})
    assert r.status_code == 200 and r.json()["status"] == "disabled" and r.json()["version"] == 2, r.text
    problem(await x.client.get("/auth/v1/userinfo", headers=worker["h"]), 401, "session_revoked")
    problem(await sign_in(x, "grid-xf-02", password="Plenty-Long-Secret-42"), 401, "account.disabled", "username")
    change = (await audit(x, action="account.update", outcome="done"))[-1]
    assert change.before["status"] == "active" and change.after["status"] == "disabled"

    # the audit: each administrator reads its own place's
    seen = (await x.client.get("/auth/v1/accounts/audit", headers=xf["h"])).json()
    assert seen and all((a["place"] or "").startswith(XF) for a in seen)
    assert any(a["outcome"] == "refused" for a in seen)
    ak = await session_of(x, "admin_ak")
    theirs = (await x.client.get("/auth/v1/accounts/audit?target=grid-xf-02", headers=ak["h"])).json()
    assert theirs == []
    street = await session_of(x, "admin_st")
    assert (await x.client.get("/auth/v1/accounts/audit?target=grid-xf-02", headers=street["h"])).json()


async def test_back_off_locks_and_the_administrator_unlocks(gw):
    x = gw
    for _ in range(5):
        problem(await sign_in(x, "staff_xf", password="wrong-password-1"), 401, "invalid_grant")
    problem(await sign_in(x, "staff_xf"), 429, "too_many_attempts")
    xf = await session_of(x, "admin_xf")
    problem(await x.client.post("/auth/v1/accounts/grid_ak/unlock", headers=xf["h"]), 404, "account.not_found")
    r = await x.client.post("/auth/v1/accounts/staff_xf/unlock", headers=xf["h"])
    assert r.status_code == 200, r.text
    assert (await sign_in(x, "staff_xf")).status_code == 200
    assert await audit(x, action="account.unlock", outcome="done")
    assert [a for a in await audit(x, action="session.sign_in", outcome="refused") if a.code == "too_many_attempts"]


async def test_password_change_sessions_and_sign_out(gw):
    x = gw
    a = await session_of(x, "staff_xf")
    b = await session_of(x, "staff_xf")
    mine = (await x.client.get("/auth/v1/me/sessions", headers=a["h"])).json()
    assert {s["id"] for s in mine} == {a["session_id"], b["session_id"]}
    assert [s["current"] for s in mine if s["id"] == a["session_id"]] == [True]
    problem(await x.client.post("/auth/v1/me/password", headers=a["h"],
                                json={"current_password": "nope", "new_password": "Another-Fine-Pass-77"}),
            400, "validation_failed", "current_password")
    problem(await x.client.post("/auth/v1/me/password", headers=a["h"],
                                json={"current_password": PASSWORD, "new_password": "qwerty123"}),
            422, "validation_failed", "new_password")
    r = await x.client.post("/auth/v1/me/password", headers=a["h"],
                            json={"current_password": PASSWORD, "new_password": "Another-Fine-Pass-77"})
    assert r.status_code == 200 and r.json()["revoked_sessions"] == [b["session_id"]], r.text
    problem(await x.client.get("/auth/v1/userinfo", headers=b["h"]), 401, "session_revoked")
    assert (await x.client.get("/auth/v1/userinfo", headers=a["h"])).status_code == 200
    problem(await sign_in(x, "staff_xf"), 401, "invalid_grant")
    c = await session_of(x, "staff_xf", password="Another-Fine-Pass-77")
    r = await x.client.post("/auth/v1/sign-out", headers=c["h"])
    assert r.json()["revoked_sessions"] == [c["session_id"]]
    problem(await x.client.get("/auth/v1/userinfo", headers=c["h"]), 401, "session_revoked")
    r = await x.client.post("/auth/v1/sign-out-everywhere", headers=a["h"])
    assert r.json()["revoked_sessions"] == [a["session_id"]]
    problem(await x.client.get("/auth/v1/me/sessions", headers=a["h"]), 401, "session_revoked")
    # a member system's token has no session to list
    problem(await x.client.get("/auth/v1/me/sessions", headers=x.h("dept-gongan")), 403, "session.required")


async def test_revocation_endpoint_discovery_and_other_replicas(gw):
    x = gw
    a = await session_of(x, "staff_xf")
    assert (await x.client.post("/auth/v1/revoke", data={"token": "not-a-token"})).status_code == 200
    # RFC 7009 §2.2: any token, valid or not, is answered 200; an empty or missing one is no request (the document
    # says minLength 1): a 422 naming it
    for data in ({"token": ""}, {}):
        r = await x.client.post("/auth/v1/revoke", data=data)
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["token"], r.text
    form = (await x.client.get("/openapi.json")).json()["components"]["schemas"]["Body_revoke_auth_v1_revoke_post"]
    assert form["properties"]["token"]["minLength"] == 1 and form["required"] == ["token"]
    r = await x.client.post("/auth/v1/revoke", data={"token": a["refresh_token"], "token_type_hint": "refresh_token"})
    assert r.status_code == 200
    problem(await x.client.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                        "refresh_token": a["refresh_token"]}), 400, "session.revoked")
    problem(await x.client.get("/auth/v1/userinfo", headers=a["h"]), 401, "session_revoked")
    b = await session_of(x, "staff_xf")
    assert (await x.client.post("/auth/v1/revoke", data={"token": b["access_token"]})).status_code == 200
    problem(await x.client.get("/auth/v1/userinfo", headers=b["h"]), 401, "session_revoked")

    doc = (await x.client.get("/.well-known/openid-configuration")).json()
    assert doc["token_endpoint"].endswith("/auth/v1/token") and doc["revocation_endpoint"].endswith("/auth/v1/revoke")
    assert "refresh_token" in doc["grant_types_supported"] and doc["issuer"] == "onenet-gateway"

    # another replica learns of a revocation from the database (the periodic reload)
    from gateway.accounts.sessions import RevokedSessions

    other = RevokedSessions(keep_seconds=700)
    assert await other.load(x.app.state.db, x.clock.now())
    assert a["session_id"] in other and b["session_id"] in other


async def test_demo_administrators_are_seeded_once_and_must_enrol(gw):
    from gateway.accounts.seed import DEMO_ADMINS, seed_admins
    from gateway.seed import DEMO_PASSWORD

    x = gw
    await seed_admins(x.app.state.db, clock=x.clock)
    await seed_admins(x.app.state.db, clock=x.clock)
    assert len([a for a in await audit(x, actor="demo-seed")]) == len(DEMO_ADMINS) - 2  # two names exist here
    problem(await sign_in(x, "admin_street", DEMO_PASSWORD), 403, "mfa.enrolment_required")
