"""Proxy authorisations (代办授权, issue 25), written from the policy in gateway/accounts/proxies.py: the person
or staff on the person's written consent authorise a helper, for a set of actions, from a start until an expiry,
revocable; a helper's token carries acting_for only from a valid record, and an expired or revoked record stops
working at once (the next call and the next token refused); every act in the account audit."""
from __future__ import annotations

from datetime import timedelta

import jwt
from sqlalchemy import select

from common import acting
from common.demo import DEMO_PASSWORD, person_id
from tests.gateway.people_platform import people_fixture  # noqa: F401 - the `people` fixture

P1, P3, P4 = person_id("P1"), person_id("P3"), person_id("P4")


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def problem(r, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if field:
        assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)], body
    else:
        assert body["code"] == code, body


async def sign_in(p, username: str, **extra):
    return await p.client.post("/auth/v1/token", data={"grant_type": "password", "username": username,
                                                       "password": DEMO_PASSWORD, **extra})


def bearer(answer: dict) -> dict:
    return {"Authorization": f"Bearer {answer['access_token']}"}


async def audit(p, action: str, outcome: str = "done") -> list:
    from gateway.accounts.models import AccountAudit

    async with p.gw.state.db.session() as s:
        return list((await s.execute(select(AccountAudit).where(
            AccountAudit.action == action, AccountAudit.outcome == outcome))).scalars())


async def test_proxies_from_the_policy(people):
    p = people
    c, now = p.client, p.clock.now()
    until = (now + timedelta(days=30)).isoformat()

    # the demo helper acts for 王秀英 through the seeded record (on her written consent), not a fixed column
    helper = await sign_in(p, "proxy1")
    assert helper.status_code == 200, helper.text
    t = claims(helper.json()["access_token"])
    assert t["acting_for"] == P3 and t["proxy_authorisation"] and "requests.submit" in t["acting_actions"]
    assert (await c.get("/auth/v1/userinfo", headers=bearer(helper.json()))).json()["acting_for"] == P3
    assert len(await audit(p, "proxy.use")) == 1

    # the person authorises the helper (basis self); a resident only for themselves
    resident = (await sign_in(p, "resident1")).json()
    r = await c.post("/auth/v1/proxies", headers=bearer(resident),
                     json={"helper": "proxy1", "person_id": P4, "actions": ["requests"], "expires_at": until})
    problem(r, 403, "proxy.not_own_person", "person_id")
    r = await c.post("/auth/v1/proxies", headers=bearer(resident),
                     json={"helper": "proxy1", "actions": ["requests", "bookings"], "expires_at": until})
    assert r.status_code == 201, r.text
    mine = r.json()
    assert (mine["person_id"], mine["basis"], mine["status"]) == (P1, "self", "active")

    # two people now: the helper names one; a person with no valid record is refused (and audited)
    assert "acting_for" not in claims((await sign_in(p, "proxy1")).json()["access_token"])
    problem(await sign_in(p, "proxy1", acting_for=P4), 403, "proxy.not_authorised", "acting_for")
    problem(await sign_in(p, "grid1", acting_for=P1), 403, "proxy.not_helper", "acting_for")
    for_p1 = (await sign_in(p, "proxy1", acting_for=P1)).json()
    # the groups asked for are kept, and carried, as their acts (common.acting)
    assert claims(for_p1["access_token"])["acting_actions"] == sorted(acting.expand(["bookings", "requests"]))

    # who sees it: the person, the helper, 幸福's staff; not 安康's staff, not another resident (404)
    for who, want in (("staff1", 200), ("staff2", 404), ("resident3", 404), ("grid1", 404), ("ops1", 200)):
        r = await c.get(f"/auth/v1/proxies/{mine['id']}", headers=p.staff(who))
        assert r.status_code == want, (who, r.text)
    assert [a["id"] for a in (await c.get("/auth/v1/proxies", headers=p.staff("staff2"))).json()] == []

    # revoked by the person: the helper's session under it is refused at once, its refresh too
    r = await c.post(f"/auth/v1/proxies/{mine['id']}/revoke", headers=bearer(resident))
    assert r.status_code == 200 and r.json()["status"] == "revoked" and r.json()["revoked_sessions"], r.text
    problem(await c.get("/auth/v1/userinfo", headers=bearer(for_p1)), 401, "session_revoked")
    r = await c.post("/auth/v1/token", data={"grant_type": "refresh_token", "refresh_token": for_p1["refresh_token"]})
    assert r.status_code == 400, r.text
    problem(await sign_in(p, "proxy1", acting_for=P1), 403, "proxy.not_authorised", "acting_for")
    problem(await c.post(f"/auth/v1/proxies/{mine['id']}/revoke", headers=bearer(resident)), 409, "proxy.revoked")

    # staff on written consent: the consent recorded, their own place's helper, a person they may read
    body = {"helper": "proxy1", "person_id": P1, "actions": ["notifications"], "expires_at":
            (now + timedelta(hours=1)).isoformat()}
    problem(await c.post("/auth/v1/proxies", headers=p.staff("staff1"), json=body), 422, "proxy.consent_required",
            "consent_ref")
    body["consent_ref"] = "幸福社区代办授权书 2026-017"
    problem(await c.post("/auth/v1/proxies", headers=p.staff("staff2"), json=body), 403, "proxy.helper_outside",
            "helper")
    problem(await c.post("/auth/v1/proxies", headers=p.staff("grid1"), json=body), 403, "proxy.not_allowed")
    problem(await c.post("/auth/v1/proxies", headers=p.staff("ops1"), json=body), 403, "proxy.not_allowed")
    problem(await c.post("/auth/v1/proxies", headers=p.staff("staff1"), json={**body, "helper": "grid1"}), 422,
            "proxy.helper_unknown", "helper")
    problem(await c.post("/auth/v1/proxies", headers=p.staff("staff1"),
                         json={**body, "expires_at": (now - timedelta(hours=1)).isoformat()}), 422, "proxy.expiry",
            "expires_at")
    r = await c.post("/auth/v1/proxies", headers=p.staff("staff1"), json=body)
    assert r.status_code == 201 and r.json()["basis"] == "consent", r.text
    short = (await sign_in(p, "proxy1", acting_for=P1)).json()
    t = claims(short["access_token"])
    assert t["exp"] - t["iat"] <= 600 and short["expires_in"] <= 600  # never beyond the record's hour
    p.clock.advance(seconds=3000)
    left = (await c.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": short["refresh_token"]})).json()
    assert left["expires_in"] == 600 and claims(left["access_token"])["exp"] - claims(left["access_token"])["iat"] \
        == 600
    p.clock.advance(seconds=300)
    left = (await c.post("/auth/v1/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": left["refresh_token"]})).json()
    assert left["expires_in"] == 300  # the access token's life ends with the record

    # expired: the next token is refused, no new sign-in either
    p.clock.advance(seconds=301)
    r = await c.post("/auth/v1/token", data={"grant_type": "refresh_token", "refresh_token": left["refresh_token"]})
    problem(r, 400, "refresh_token.expired")  # the session ended with the record
    problem(await sign_in(p, "proxy1", acting_for=P1), 403, "proxy.not_authorised", "acting_for")

    # every act audited: grants, the revocation, uses, refusals
    assert len(await audit(p, "proxy.grant")) == 3  # the seed's, the resident's, staff1's
    assert len(await audit(p, "proxy.revoke")) == 1
    assert len(await audit(p, "proxy.use")) >= 3
    assert {a.code for a in await audit(p, "proxy.grant", "refused")} >= {
        "proxy.not_own_person", "proxy.consent_required", "proxy.helper_outside", "proxy.not_allowed"}
