"""Real-name binding through the gateway (issue 25): a resident signed in by phone gives name and ID number;
公安 is asked through the exchange (svc_residents' grant, the message log); the account is linked to the person
on record, or waits for the community's staff, who make the record; then the resident submits a request.

Written from the issue: a bad checksum, no consent, a name 公安 does not confirm, an ID number bound to another
account: each a problem naming the field, nothing written on either side, every refusal in the account audit."""
from __future__ import annotations

import jwt
from sqlalchemy import func, select

from common.demo import household_id, person_id
from common.validators import resident_id_check_char
from gateway.departments.app import DEMO_REGISTRY, registry_entry
from tests.gateway.people_platform import people_fixture  # noqa: F401 - the `people` fixture

HUANG = ("黄磊", "110105197511300713")  # P8, on record in 安康社区, no account yet
XF = "110105001001"  # 幸福社区


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def problem(r, status: int, code: str, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if field:
        assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)], body
    else:
        assert body["code"] == code, body
    return body


def unknown_person() -> tuple[str, str]:
    """A valid ID number 公安 has a registration for, with nobody on record."""
    for n in range(1000):
        first = f"11010519900307{n:03d}"
        number = first + resident_id_check_char(first)
        entry = registry_entry(number)
        if number not in DEMO_REGISTRY and entry is not None:
            return entry.name, number
    raise AssertionError("no such number")


async def bind(p, h, name, number, **extra):
    return await p.client.post("/auth/v1/me/identity", headers=h,
                               json={"name": name, "id_number": number, "consent": True, **extra})


async def bindings_in_residents(p) -> int:
    from svc_residents.identity.models import AccountBinding

    async with p.apps["svc_residents"].state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(AccountBinding))).scalar_one()


async def refusals(p, code: str) -> int:
    from gateway.accounts.models import AccountAudit

    async with p.gw.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(AccountAudit).where(
            AccountAudit.action == "account.bind", AccountAudit.outcome == "refused",
            AccountAudit.code == code))).scalar_one()


async def test_bind_to_the_person_on_record_then_submit(people):
    p = people
    me = await p.phone_session("13900008888")
    assert (await p.client.get("/auth/v1/me/identity", headers=me["h"])).json()["binding"] == "none"
    r = await bind(p, me["h"], *HUANG)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["binding"] == "bound" and out["person_id"] == person_id("P8")
    assert out["id_number"] == "110105********0713"
    scopes = claims(out["access_token"])["scopes"]
    assert f"person:{person_id('P8')}" in scopes and f"household:{household_id('5')}" in scopes
    assert claims(out["access_token"])["sid"] == me["session_id"]
    h = {"Authorization": f"Bearer {out['access_token']}"}
    # the person's consent to the 公安 check is on their record; 公安 was asked through the exchange
    consents = await p.client.get(f"/residents/v1/persons/{person_id('P8')}/consents", headers=h)
    assert consents.status_code == 200, consents.text
    assert [c["purpose"] for c in consents.json()].count("identity_check") == 1
    r = await p.client.post("/services/v1/requests", headers={**h, "Idempotency-Key": "bind-1"}, json={
        "item_code": "SH-WX-001", "channel": "app", "description": "楼道灯不亮",
        "attributes": {"appliance": "electric"}, "location": {"grid": "110105001002002"}})
    assert r.status_code == 201, r.text
    assert r.json()["person_id"] == person_id("P8")
    # a refresh keeps the person's scopes; asking again says so
    r = await p.client.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": me["refresh_token"]})
    assert f"person:{person_id('P8')}" in claims(r.json()["access_token"])["scopes"]
    problem(await bind(p, h, *HUANG), 409, "binding.exists")
    # another phone cannot take the same person
    other = await p.phone_session("13900008889")
    problem(await bind(p, other["h"], *HUANG), 409, "binding.id_number_taken")
    assert await refusals(p, "binding.id_number_taken") == 1


async def test_bad_input_writes_nothing(people):
    from gateway.accounts.models import ResidentAccount

    p = people
    me = await p.phone_session("13900007777")
    name, number = HUANG
    bad = number[:-1] + ("0" if number[-1] != "0" else "1")
    problem(await bind(p, me["h"], name, bad), 422, "id_number.checksum", "id_number")
    problem(await bind(p, me["h"], name, "11010519751130071"), 422, "id_number.length", "id_number")
    r = await p.client.post("/auth/v1/me/identity", headers=me["h"],
                            json={"name": name, "id_number": number, "consent": False})
    problem(r, 422, "consent.required", "consent")
    body = problem(await bind(p, me["h"], "张三", number), 422, "identity.not_confirmed", "name")
    assert "不一致" in body["errors"][0]["message"]
    assert await bindings_in_residents(p) == 0
    async with p.gw.state.db.session() as s:
        acc = await s.get(ResidentAccount, claims(me["access_token"])["sub"])
    assert acc.binding == "none" and acc.person_id is None and acc.id_number_bidx is None
    assert await refusals(p, "identity.not_confirmed") == 1 and await refusals(p, "consent.required") == 1
    assert await refusals(p, "id_number.checksum") == 1
    # a staff or password account is not a phone account; a system token is not a resident
    problem(await bind(p, p.staff("resident1"), name, number), 403, "binding.resident_session_required")


async def test_no_record_waits_for_the_community(people):
    p = people
    me = await p.phone_session("13900006666")
    name, number = unknown_person()
    problem(await bind(p, me["h"], name, number), 422, "binding.community_required", "community")
    r = await bind(p, me["h"], name, number, community=XF)
    assert r.status_code == 202, r.text
    assert r.json()["binding"] == "pending" and r.json()["person_id"] is None and r.json()["access_token"] is None
    binding_id = r.json()["registration_id"]
    assert (await p.client.get("/auth/v1/me/identity", headers=me["h"])).json()["binding"] == "pending"
    # 安康社区's staff do not see it; 幸福社区's do
    other = await p.client.get("/residents/v1/account-bindings", headers=p.staff("staff2"))
    assert other.status_code == 200 and other.json() == []
    listed = await p.client.get("/residents/v1/account-bindings", headers=p.staff("staff1"))
    assert [b["id"] for b in listed.json()] == [binding_id]
    # a resident cannot decide, nor read the list
    r = await p.client.post(f"/residents/v1/account-bindings/{binding_id}/confirm", headers=me["h"],
                            json={"household_id": household_id("1")})
    assert r.status_code == 403, r.text
    r = await p.client.post(f"/residents/v1/account-bindings/{binding_id}/confirm", headers=p.staff("staff1"),
                            json={"household_id": household_id("1"), "residency_type": "resident",
                                  "relation_to_head": "租户"})
    assert r.status_code == 200, r.text
    made = r.json()["person_id"]
    assert r.json()["status"] == "bound" and made
    out = (await p.client.get("/auth/v1/me/identity", headers=me["h"])).json()
    assert out["binding"] == "bound" and out["person_id"] == made
    assert f"person:{made}" in claims(out["access_token"])["scopes"]
    person = await p.client.get(f"/residents/v1/persons/{made}", headers=p.staff("staff1"))
    assert person.status_code == 200 and person.json()["name"] == name


async def test_refused_by_the_community(people):
    p = people
    me = await p.phone_session("13900005555")
    name, number = unknown_person()
    r = await bind(p, me["h"], name, number, community=XF)
    binding_id = r.json()["registration_id"]
    r = await p.client.post(f"/residents/v1/account-bindings/{binding_id}/refuse", headers=p.staff("staff1"),
                            json={"note": "查无此人"})
    assert r.status_code == 200 and r.json()["status"] == "refused"
    assert (await p.client.get("/auth/v1/me/identity", headers=me["h"])).json()["binding"] == "refused"
    # asked anew, it waits again
    r = await bind(p, me["h"], name, number, community=XF)
    assert r.status_code == 202, r.text
