"""Kiosk sign-in with an ID card (issue 25), from gateway/accounts/kiosk.py: the emulated reader signs what it read
with its Ed25519 key (real cryptography); the gateway verifies the reader, the signature, freshness and replay,
checks the card with 公安 through the exchange (svc_residents' binding, channel kiosk) and opens a short resident
session bound to the kiosk, ended by the kiosk's "done" (sign-out) or after idle time. Replay, unknown reader,
stale reading, a bad signature, a name 公安 does not confirm, nobody on record: each a clear problem, audited,
nothing made."""
from __future__ import annotations

from datetime import timedelta

import jwt
from sqlalchemy import func, select

from common.demo import person_id
from gateway.accounts.card_reader import CardReader
from tests.gateway.people_platform import people_fixture  # noqa: F401 - the `people` fixture
from tests.gateway.test_binding import HUANG, unknown_person

P8 = person_id("P8")


def problem(r, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if field:
        assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)], body
    else:
        assert body["code"] == code, body


async def count(p, model, *where) -> int:
    async with p.gw.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def test_kiosk_sign_in_with_an_id_card(people):
    from gateway.accounts.models import AccountAudit
    from gateway.members.models import User

    p = people
    c = p.client
    kiosk = {"Authorization": "Bearer " + p.gw.state.token_issuer.issue(
        subject="kiosk", member="kiosk", role="system", scopes=[])["access_token"]}
    reader = CardReader("kiosk-xf-01-reader")

    # ops register the reader's public key for the kiosk; only ops, only a real key
    body = {"id": reader.device_id, "member": "kiosk", "public_key": reader.public_key}
    problem(await c.post("/auth/v1/kiosk/devices", headers=p.staff("staff1"), json=body), 403, "forbidden")
    problem(await c.post("/auth/v1/kiosk/devices", headers=p.staff("ops1"), json={**body, "public_key": "x" * 50}),
            422, "kiosk.bad_key", "public_key")
    r = await c.post("/auth/v1/kiosk/devices", headers=p.staff("ops1"), json=body)
    assert r.status_code == 201, r.text

    def read(name=HUANG[0], number=HUANG[1], at=None, who=reader):
        return who.read(card_number=number, name=name, chip_serial="CHIP-0001", at=at or p.clock.now())

    # 黄磊 (on record in 安康, no account) taps his card: a short session of his, bound to the kiosk
    signed = read()
    r = await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=signed)
    assert r.status_code == 201, r.text
    s = r.json()
    t = jwt.decode(s["access_token"], options={"verify_signature": False})
    assert (s["person_id"], t["member"], t["kiosk_device"], t["amr"], t["role"]) == (
        P8, "kiosk", reader.device_id, ["sc"], "resident")
    assert f"person:{P8}" in t["scopes"]
    h = {"Authorization": f"Bearer {s['access_token']}"}
    assert (await c.get("/auth/v1/userinfo", headers=h)).json()["sub"] == t["sub"]

    # he asks for lunch delivery at the kiosk: only on the kiosk channel, and the timeline names the kiosk
    lunch = {"item_code": "YL-ZC-001", "channel": "app", "description": "申请工作日午餐送餐。",
             "attributes": {"meal_time": "lunch", "diet": ["soft"]}, "location": {"grid": "110105001002001"}}
    problem(await c.post("/services/v1/requests", headers=h, json=lunch), 422, "channel.kiosk_session", "channel")
    r = await c.post("/services/v1/requests", headers=h, json=lunch | {"channel": "kiosk"})
    assert r.status_code == 201, r.text
    assert (r.json()["person_id"], r.json()["channel"]) == (P8, "kiosk")
    first = (await c.get(f"/services/v1/requests/{r.json()['id']}/timeline", headers=h)).json()[0]
    assert (first["action"], first["data"]["channel"], first["data"]["kiosk_device"], first["data"]["kiosk"]) == (
        "submit", "kiosk", reader.device_id, "kiosk")

    # the same reading again: a replay
    problem(await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=signed), 409, "kiosk.reading_replayed")
    # the kiosk's "done" button: the session ends at once
    assert (await c.post("/auth/v1/sign-out", headers=h)).status_code == 200
    problem(await c.get("/auth/v1/userinfo", headers=h), 401, "session_revoked")

    # idle: a session's access tokens live its idle time (180 s; their exp is on real time, common/clock.py), a
    # renewal in time gives another 180 s, no more; left unused past it, its refresh token is good no more either
    def lives(token: str) -> int:
        t = jwt.decode(token, options={"verify_signature": False})
        return t["exp"] - t["iat"]

    s2 = (await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=read())).json()
    assert s2["person_id"] == P8 and s2["session_id"] != s["session_id"]
    assert s2["expires_in"] == lives(s2["access_token"]) == 180
    p.clock.advance(seconds=100)
    r = await c.post("/auth/v1/token", data={"grant_type": "refresh_token", "refresh_token": s2["refresh_token"]})
    assert r.status_code == 200 and r.json()["expires_in"] == lives(r.json()["access_token"]) == 180, r.text
    s2 = r.json()
    p.clock.advance(seconds=181)
    r = await c.post("/auth/v1/token", data={"grant_type": "refresh_token", "refresh_token": s2["refresh_token"]})
    problem(r, 400, "refresh_token.expired")

    # what is refused, each named
    users = await count(p, User)
    stranger = CardReader("kiosk-unknown")
    problem(await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=read(who=stranger)), 401,
            "kiosk.unknown_device", "reading.device_id")
    other = {"Authorization": "Bearer " + p.gw.state.token_issuer.issue(
        subject="dept-minzheng", member="dept-minzheng", role="dept_staff", scopes=[])["access_token"]}
    problem(await c.post("/auth/v1/kiosk/sessions", headers=other, json=read()), 403, "kiosk.not_this_kiosk",
            "reading.device_id")
    forged = read()
    forged["reading"]["name"] = "李四"
    problem(await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=forged), 401, "kiosk.bad_signature",
            "signature")
    problem(await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=read(at=p.clock.now() - timedelta(minutes=2))),
            422, "kiosk.stale_reading", "reading.read_at")
    problem(await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=read(number=HUANG[1][:-1] + "0")), 422,
            "id_number.checksum", "reading.card_number")
    problem(await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=read(name="黄小磊")), 422,
            "identity.not_confirmed", "reading.name")
    name, number = unknown_person()
    problem(await c.post("/auth/v1/kiosk/sessions", headers=kiosk, json=read(name=name, number=number)), 404,
            "kiosk.no_record")
    assert await count(p, User) == users  # nothing made
    assert await count(p, AccountAudit, AccountAudit.action == "kiosk.sign_in",
                       AccountAudit.outcome == "refused") == 8
