"""The password policy's blocklist (gateway/accounts/passwords.py): zxcvbn's 30,000 common passwords with the
bundled Chinese-specific list, written from the policy: a listed password is refused as is, in any case and with
digits or symbols at its ends, on every path that sets a password (here: an administrator creating an account and
a person changing their own), a 422 in Chinese naming the field, nothing changed; the demo and test passwords
the platform sets still pass."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from common.demo import DEMO_PASSWORD
from common.errors import Problem
from gateway.accounts.passwords import check_password, common_passwords

# in zxcvbn's list, not in the old bundled one of 175; long enough that only the list refuses them
FROM_ZXCVBN = ["iseedeadpeople", "FinalFantasy", "LeaveMeAlone", "Dragonball2000!", "whosyourdaddy"]
CHINESE = [
    "ILoveYou1314",
    "Guangzhou2026!",
]  # the bundled list's: iloveyou1314, guangzhou (digits and symbols off its ends)
PASSWORD = "Correct-Horse-Battery-9"


def _refusal(password: str, field: str = "password") -> dict:
    with pytest.raises(Problem) as caught:
        check_password(password, field=field)
    p = caught.value
    body = {"status": p.status, "errors": p.errors}
    assert p.status == 422 and [(e["field"], e["code"]) for e in p.errors] == [(field, "password.common")], body
    assert "常见" in p.errors[0]["message"][0], body
    return body


@pytest.mark.parametrize("password", FROM_ZXCVBN + CHINESE)
def test_a_listed_password_is_refused_naming_the_field(password):
    _refusal(password)
    _refusal(password, field="new_password")


def test_the_list_is_large_and_holds_both_sources():
    listed = common_passwords()
    assert len(listed) > 30_000 and all(p == p.lower() for p in listed)
    assert {"iseedeadpeople", "dragonball", "woaini1314", "onenet2026"} <= listed


@pytest.mark.parametrize("password", [DEMO_PASSWORD, PASSWORD, "Plenty-Long-Secret-42", "山河远阔，人间烟火，2026"])
def test_the_platforms_own_passwords_still_pass(password):
    check_password(password)


@pytest.mark.parametrize("exchange", [{"mfa_required_roles": ["ops"]}], indirect=True)
async def test_listed_passwords_are_refused_through_the_gateway_and_nothing_changes(exchange):
    from gateway.accounts.models import TotpFactor
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import Member, User
    import pyotp

    x = exchange
    now, secret = x.clock.now(), pyotp.random_base32()
    hashed = hash_secret(PASSWORD)
    async with x.app.state.db.session() as s, s.begin():
        s.add(
            Member(code="portal", name="居民端", kind="app", role="system", scopes=[], status="active", created_at=now)
        )
        await s.flush()  # the app accounts are made through
        for name, admin in (("admin_xf", True), ("staff_xf", False)):
            s.add(
                User(
                    username=name,
                    display_name=name,
                    password_hash=hashed,
                    role="community_staff",
                    scopes=["community:110105001001"],
                    admin=admin,
                    member_code="community-xf",
                    status="active",
                    created_at=now,
                )
            )
        await s.flush()
        s.add(TotpFactor(username="admin_xf", secret=secret, created_at=now, enabled_at=now))

    async def sign_in(name: str, password: str = PASSWORD, **extra) -> dict:
        r = await x.client.post(
            "/auth/v1/token", data={"grant_type": "password", "username": name, "password": password, **extra}
        )
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    admin = await sign_in("admin_xf", otp=pyotp.TOTP(secret).at(now))
    staff = await sign_in("staff_xf")
    body = {
        "username": "grid-xf-03",
        "display_name": "网格员",
        "role": "grid_worker",
        "scopes": ["grid:110105001001002"],
    }
    for password in ("iseedeadpeople", "Dragonball2000!"):
        r = await x.client.post("/auth/v1/accounts", headers=admin, json={**body, "password": password})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("password", "password.common")]
        assert "常见" in r.json()["detail"]
        r = await x.client.post(
            "/auth/v1/me/password", headers=staff, json={"current_password": PASSWORD, "new_password": password}
        )
        assert r.status_code == 422, r.text
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("new_password", "password.common")]
    async with x.app.state.db.session() as s:
        assert (await s.execute(select(User).where(User.username == "grid-xf-03"))).first() is None
        assert (await s.get(User, "staff_xf")).password_hash == hashed
    await sign_in("staff_xf")  # the old password still holds, the session was not ended
    r = await x.client.post("/auth/v1/accounts", headers=admin, json={**body, "password": "Plenty-Long-Secret-42"})
    assert r.status_code == 201, r.text
