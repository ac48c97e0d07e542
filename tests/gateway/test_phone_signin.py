"""Residents register and sign in by phone with a one-time SMS code, through the gateway and the SMS platform's
emulator (issue 25; gateway/accounts/phone.py, gateway/departments/sms.py).

Written from the issue: 6 digits, 5 minutes, at most 5 tries, a resend back-off, per-phone and per-source limits,
codes stored hashed, the same answer for a phone with an account and one without, an account with its phone
encrypted and blind-indexed, then a session of the staff's machinery; every refusal in the account audit."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from gateway.accounts.phone import SMS_GRANT

pytestmark = pytest.mark.parametrize("exchange", [{"sms_test_reads": True, "sms_source_per_hour": 8}],
                                     indirect=True)
PHONE, OTHER = "13900001234", "13700004321"


@pytest.fixture
async def x(exchange, tmp_path):
    from gateway.members.models import Member

    exchange.app.state.settings.field_keys_file = tmp_path / "fields.json"
    exchange.emulators.state.sms.test_reads = True
    async with exchange.app.state.db.session() as s, s.begin():
        s.add(Member(code="portal", name="居民端", kind="app", role="system", scopes=[], status="active",
                     created_at=exchange.clock.now()))
    return exchange


async def ask(x, phone=PHONE, **kw):
    return await x.client.post("/auth/v1/phone/codes", json={"phone": phone}, **kw)


async def last_code(x, phone=PHONE) -> str:
    r = await x.client.get("/auth/v1/testing/sms", params={"phone": phone})
    assert r.status_code == 200, r.text
    return r.json()["code"]


async def sign_in(x, code: str, phone=PHONE, **extra):
    return await x.client.post("/auth/v1/token", data={"grant_type": SMS_GRANT, "phone": phone, "code": code,
                                                       **extra})


def problem(r, status: int, code: str, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == code, body
    if field:
        assert [e["field"] for e in body["errors"]] == [field], body
    assert "access_token" not in r.text
    return body


async def audit(x, action: str, outcome: str = "refused") -> list:
    from gateway.accounts.models import AccountAudit

    async with x.app.state.db.session() as s:
        return list((await s.execute(select(AccountAudit).where(
            AccountAudit.action == action, AccountAudit.outcome == outcome))).scalars())


async def test_register_by_phone_then_sign_in_again(x):
    from gateway.accounts.models import ResidentAccount, SmsChallenge

    r = await ask(x)
    assert r.status_code == 202, r.text
    assert r.json()["phone"] == "139****1234" and r.json()["expires_in"] == 300
    code = await last_code(x)
    assert len(code) == 6 and code.isdigit()
    r = await sign_in(x, code)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["role"] == "resident" and first["refresh_token"] and first["member"] == "portal"
    me = await x.client.get("/auth/v1/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert me.status_code == 200 and me.json()["role"] == "resident", me.text
    username = me.json()["sub"]
    async with x.app.state.db.session() as s:
        acc = await s.get(ResidentAccount, username)
        rows = list((await s.execute(select(SmsChallenge))).scalars())
    assert acc is not None and PHONE not in acc.phone_enc and acc.phone_masked == "139****1234"
    assert acc.binding == "none" and acc.person_id is None
    assert x.app.state.phone_signin.protection.cipher.decrypt(acc.phone_enc, aad=f"gateway:resident_accounts:"
                                                              f"{username}:phone") == PHONE
    assert all(code not in (c.code_digest or "") for c in rows) and rows[0].ended_reason == "used"
    # the code is used once
    problem(await sign_in(x, code), 400, "sms_code.invalid", "code")
    # a refresh keeps how the session began
    r = await x.client.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    import jwt
    assert jwt.decode(r.json()["access_token"], options={"verify_signature": False})["amr"] == ["sms"]
    # the next sign-in finds the same account
    x.clock.advance(seconds=61)
    assert (await ask(x)).status_code == 202
    r = await sign_in(x, await last_code(x))
    assert r.status_code == 200, r.text
    again = await x.client.get("/auth/v1/userinfo", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert again.json()["sub"] == username
    assert len(await audit(x, "account.register", "done")) == 1


async def test_same_answer_for_known_and_unknown_phones(x):
    assert (await ask(x, OTHER)).status_code == 202
    assert (await sign_in(x, await last_code(x, OTHER), OTHER)).status_code == 200  # OTHER has an account now
    x.clock.advance(seconds=3600)
    known, unknown = await ask(x, OTHER), await ask(x, PHONE)
    assert known.status_code == unknown.status_code == 202
    a, b = known.json(), unknown.json()
    assert a.pop("phone") != b.pop("phone") and a == b
    assert set(known.headers) - {"x-request-id", "traceparent", "date", "content-length"} == \
        set(unknown.headers) - {"x-request-id", "traceparent", "date", "content-length"}


async def test_wrong_expired_and_too_many_tries(x):
    await ask(x)
    code = await last_code(x)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    body = problem(await sign_in(x, wrong), 400, "sms_code.invalid", "code")
    assert body["tries_left"] == 4
    for _ in range(3):
        problem(await sign_in(x, wrong), 400, "sms_code.invalid", "code")
    problem(await sign_in(x, wrong), 400, "sms_code.too_many_tries", "code")
    problem(await sign_in(x, code), 400, "sms_code.too_many_tries", "code")  # the right code, too late
    # a new code, left to expire
    x.clock.advance(seconds=61)
    await ask(x)
    code = await last_code(x)
    x.clock.advance(seconds=300)
    problem(await sign_in(x, code), 400, "sms_code.expired", "code")
    refused = [a.code for a in await audit(x, "session.sign_in")]
    assert refused.count("sms_code.invalid") == 4 and refused.count("sms_code.too_many_tries") == 2
    assert "sms_code.expired" in refused
    assert all(a.target == "139****1234" for a in await audit(x, "session.sign_in"))


async def test_resend_back_off_and_limits(x):
    assert (await ask(x)).status_code == 202
    r = await ask(x)
    problem(r, 429, "phone.resend_too_soon")
    assert int(r.headers["Retry-After"]) == 60
    x.clock.advance(seconds=60)
    r = await ask(x)
    assert r.status_code == 202 and r.json()["resend_after"] == 120
    x.clock.advance(seconds=119)
    r = await ask(x)
    problem(r, 429, "phone.resend_too_soon")  # the second resend waits twice as long
    assert int(r.headers["Retry-After"]) == 1
    # only the newest code works
    x.clock.advance(seconds=1)
    assert (await ask(x)).status_code == 202
    # the source's limit (8 an hour here), whichever phones
    for i in range(5):  # 3 codes to PHONE, 5 to others
        assert (await ask(x, f"1360000000{i}")).status_code == 202
    problem(await ask(x, "13600000009"), 429, "phone.too_many_from_source")
    assert "phone.too_many_from_source" in [a.code for a in await audit(x, "phone.code")]


async def test_per_phone_limit(x):
    x.app.state.settings.sms_resend_seconds = 1
    for _ in range(5):
        assert (await ask(x)).status_code == 202
        x.clock.advance(seconds=20)
    r = await ask(x)
    problem(r, 429, "phone.too_many_codes")
    assert int(r.headers["Retry-After"]) > 3000


async def test_bad_phone_numbers(x):
    for bad, code in (("1390000123", "phone.length"), ("139000012345", "phone.length"), ("1390000abcd", "phone.format"),
                      ("12900001234", "phone.format")):
        problem(await ask(x, bad), 422, code, "phone")
        problem(await sign_in(x, "123456", bad), 422, code, "phone")
    r = await x.client.post("/auth/v1/phone/codes", json={"phone": PHONE, "extra": 1})
    assert r.status_code == 422
    assert len(await audit(x, "phone.code")) == 4


async def test_sms_platform_down(x):
    sms = x.emulators.state.sms
    sms.down = True
    problem(await ask(x), 503, "sms.unavailable")
    sms.down = False
    assert (await ask(x)).status_code == 202  # a code never sent is no resend: no back-off
    assert (await sign_in(x, await last_code(x))).status_code == 200
    # a fraction failing
    sms.failure_rate = 1.0
    x.clock.advance(seconds=3600)
    problem(await ask(x), 503, "sms.unavailable")
    assert "sms.unavailable" in [a.code for a in await audit(x, "phone.code")]


async def test_delivery_receipt_and_test_reads_off(x):
    from gateway.departments.sms import SmsPlatform

    await ask(x)
    sms: SmsPlatform = x.emulators.state.sms
    msg = next(iter(sms.messages.values()))
    receipt = await x.app.state.phone_signin.sms.receipt(msg.id)
    assert receipt["status"] == "delivered" and receipt["phone"] == "139****1234"
    sms.test_reads = False
    r = await x.client.get("/auth/v1/testing/sms", params={"phone": PHONE})
    assert r.status_code == 404
    x.app.state.settings.sms_test_reads = False
    sms.test_reads = True
    r = await x.client.get("/auth/v1/testing/sms", params={"phone": PHONE})
    assert r.status_code == 404
