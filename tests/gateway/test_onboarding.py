"""docs/onboarding-departments.md end to end through the gateway, step by step as the page gives it: ops sign in
with password and TOTP and register the member; the secret is shown once (only its argon2id hash kept) and in no
later read; the department gets a token by client credentials, browses the catalogue, applies for the
unconditionally shared renshe.insurance (granted at once), calls it plainly and as an X-Road client, and reads its
grants; a rotated secret ends the old one, a revoked member's token is refused at once."""

from __future__ import annotations

import json

import pyotp
import pytest
from sqlalchemy import select

PASSWORD = "Ops-Console-Passphrase-7"
SECRET = pyotp.random_base32()
ID = "110105194703210823"
MEMBER = {
    "code": "dept-tuijun",
    "name": "区退役军人事务局",
    "kind": "department",
    "role": "dept_staff",
    "scopes": ["dept:tuijun"],
}  # step 1's body, as the page sends it
XR_CLIENT = "CN-ONENET/GOV/dept-tuijun"
CALL_PURPOSE = "优抚对象免交材料核验"
P = "%E4%BC%98%E6%8A%9A%E5%AF%B9%E8%B1%A1%E5%85%8D%E4%BA%A4%E6%9D%90%E6%96%99%E6%A0%B8%E9%AA%8C"  # the page's $P
pytestmark = pytest.mark.parametrize("exchange", [{"mfa_required_roles": ["ops"]}], indirect=True)


async def _seed_ops(x) -> None:
    """An ops account with an enrolled authenticator (the demo ops1's place), as the seed writes it."""
    from gateway.accounts.models import TotpFactor
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import User

    now = x.clock.now()
    async with x.app.state.db.session() as s, s.begin():
        s.add(
            User(
                username="ops1",
                display_name="运维一",
                password_hash=hash_secret(PASSWORD),
                role="ops",
                scopes=[],
                admin=False,
                member_code="ops-console",
                status="active",
                created_at=now,
            )
        )
        await s.flush()
        s.add(TotpFactor(username="ops1", secret=SECRET, created_at=now, enabled_at=now))


async def _token(x, **form) -> dict:
    r = await x.client.post("/auth/v1/token", data=form)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_a_department_is_onboarded_as_the_page_says(exchange):
    from gateway.base import OutboxEvent
    from gateway.exchange.models import MessageLog
    from gateway.members.models import Member

    x = exchange
    await _seed_ops(x)

    # 1. ops sign in with password and TOTP (without the code: no token), then register the member
    r = await x.client.post("/auth/v1/token", data={"grant_type": "password", "username": "ops1", "password": PASSWORD})
    assert r.status_code == 401 and "access_token" not in r.text, r.text
    ops = await _token(
        x, grant_type="password", username="ops1", password=PASSWORD, otp=pyotp.TOTP(SECRET).at(x.clock.now())
    )
    r = await x.client.post("/exchange/v1/members", headers=ops, json=MEMBER)
    assert r.status_code == 201, r.text
    created = r.json()
    sec = created["client_secret"]
    assert created["client_id"] == "dept-tuijun" and len(sec) >= 32
    assert {k: created["member"][k] for k in MEMBER} == MEMBER and created["member"]["status"] == "active"
    r = await x.client.post("/exchange/v1/members", headers=ops, json=MEMBER)  # the code is taken: no new secret
    assert r.status_code == 409 and r.json()["code"] == "member.exists" and sec not in r.text

    # 2. client credentials
    dept = await _token(x, grant_type="client_credentials", client_id="dept-tuijun", client_secret=sec)
    r = await x.client.get("/.well-known/openid-configuration")
    assert r.status_code == 200 and r.json()["jwks_uri"].endswith("/.well-known/jwks.json")

    # 3. the catalogue and a grant (unconditional: approved at once)
    r = await x.client.get("/exchange/v1/catalogue", params={"limit": 5}, headers=dept)
    assert r.status_code == 200 and 0 < len(r.json()["items"]) <= 5, r.text
    r = await x.client.get("/exchange/v1/catalogue/renshe.insurance", headers=dept)
    assert r.json()["sharing_class"] == "unconditional" and r.json()["fields"], r.text
    assert (r.json()["xroad_subsystem"], r.json()["xroad_service"]) == ("insurance", "insurance-status")
    purpose = "核验参保状态，为优抚对象办理免交材料"
    r = await x.client.post(
        "/exchange/v1/grants", headers=dept, json={"resource": "renshe.insurance", "purpose": purpose}
    )
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text

    # 4. calls: plain REST, then as an X-Road client (listMethods and the service)
    r = await x.client.post(
        "/departments/renshe/v1/queries", headers={**dept, "X-OneNet-Purpose": P}, json={"id_number": ID}
    )
    assert r.status_code == 200, r.text
    assert r.json()["id_number"] == ID and set(r.json()["data"]) == {"insured", "pension"}
    xr = {**dept, "X-Road-Client": XR_CLIENT, "X-Road-Issue": P}
    r = await x.client.get("/r1/CN-ONENET/GOV/dept-renshe/insurance/listMethods", headers=xr)
    assert r.status_code == 200, r.text
    assert any(s["service_code"] == "insurance-status" for s in r.json()["service"]), r.text
    r = await x.client.post(
        "/r1/CN-ONENET/GOV/dept-renshe/insurance/insurance-status/queries", headers=xr, json={"id_number": ID}
    )
    assert r.status_code == 200, r.text
    assert set(r.json()["data"]) == {"insured", "pension"} and r.headers["x-road-client"] == XR_CLIENT
    r = await x.client.post(
        "/r1/CN-ONENET/GOV/dept-renshe/insurance/insurance-status/queries",
        headers={**xr, "X-Road-Client": "CN-ONENET/GOV/dept-minzheng"},
        json={"id_number": ID},
    )
    assert r.status_code == 400 and r.headers["x-road-error"] == "Client.Unauthorized", r.text  # not its own name

    # 5. afterwards: its grants; the owner's message log holds each call with the purpose it stated
    r = await x.client.get("/exchange/v1/grants", params={"side": "consumer"}, headers=dept)
    assert [(g["resource"], g["status"]) for g in r.json()["items"]] == [("renshe.insurance", "approved")]
    await x.app.state.audit.flush()
    r = await x.client.get("/exchange/v1/log", headers=x.h("dept-renshe"))
    calls = [(e["path"], e["status"], e["purpose"]) for e in r.json()["items"] if e["member"] == "dept-tuijun"]
    assert calls == [("/departments/renshe/v1/queries", 400, CALL_PURPOSE)] + 2 * [
        ("/departments/renshe/v1/queries", 200, CALL_PURPOSE)
    ], r.text  # newest first: the misnamed call too

    # the secret was shown that once: no later answer, no row, no event holds it; the hash is argon2id
    for r in (
        await x.client.get("/exchange/v1/members", headers=ops),
        await x.client.patch("/exchange/v1/members/dept-tuijun", headers=ops, json={"name": "区退役军人事务局"}),
        await x.client.get("/exchange/v1/grants", params={"side": "consumer"}, headers=dept),
        await x.client.get("/exchange/v1/log", headers=x.h("dept-renshe")),
    ):
        assert r.status_code == 200 and sec not in r.text and "client_secret" not in r.text, r.text
    listed = next(
        m for m in (await x.client.get("/exchange/v1/members", headers=ops)).json() if m["code"] == "dept-tuijun"
    )
    assert "secret_hash" not in listed and listed["secret_rotated_at"]
    async with x.app.state.db.session() as s:
        stored = await s.get(Member, "dept-tuijun")
        assert stored.secret_hash.startswith("$argon2id$") and sec not in stored.secret_hash
        events = (await s.execute(select(OutboxEvent))).scalars().all()
        logged = (await s.execute(select(MessageLog))).scalars().all()
    assert all(sec not in json.dumps(e.data or {}, default=str) for e in events)
    assert all(
        sec not in json.dumps({c.name: getattr(e, c.name) for c in e.__table__.columns}, default=str) for e in logged
    )

    # lost or leaked: a rotated secret ends the old one; a revoked member's token is refused at once
    r = await x.client.post("/exchange/v1/members/dept-tuijun/rotate-secret", headers=ops)
    new = r.json()["client_secret"]
    assert r.status_code == 200 and new != sec
    r = await x.client.post(
        "/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "dept-tuijun", "client_secret": sec}
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_client", r.text
    dept = await _token(x, grant_type="client_credentials", client_id="dept-tuijun", client_secret=new)
    assert (await x.client.post("/exchange/v1/members/dept-tuijun/revoke", headers=ops)).status_code == 200
    r = await x.client.post("/departments/renshe/v1/queries", headers=dept, json={"id_number": ID})
    assert (r.status_code, r.json()["code"]) == (403, "member_revoked") and "停用" in r.json()["detail"], r.text
    r = await x.client.post(
        "/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "dept-tuijun", "client_secret": new}
    )
    assert r.status_code == 401 and "access_token" not in r.text, r.text
