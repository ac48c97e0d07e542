"""A helper (代办员) acts for a person only in what the proxy authorisation allows (issue 25, common/acting.py),
written from the policy: the person (or staff on the person's written consent) chooses the acts; a helper's
session carries them; each service refuses, where the data is, an act the record does not name (403
`proxy.action_not_allowed` naming it, in the audit log); a write that is no act of the vocabulary is refused to
every helper (403 `proxy.not_an_act`); an expired or revoked record gives nothing; a helper
never acts for a person the record is not for. Through the in-process platform with the real gateway (its
password sign-in and proxy records), svc_services on each database."""
from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import timedelta

import jwt
import pytest

from common.clock import FrozenClock
from common.demo import DEMO_PASSWORD, person_id
from tests.inprocess import start_platform

XF = "110105001001"
P1, P3 = person_id("P1"), person_id("P3")
SUBMIT = {"item_code": "SH-WX-001", "channel": "app", "location": {"grid": "110105001001001"},
          "description": "厨房水管漏水，需要上门维修。", "attributes": {"appliance": "plumbing"}}


@pytest.fixture
async def platform(db_url, tmp_path):
    async with AsyncExitStack() as stack:
        p = await start_platform(stack, tmp_path, urls={"svc_services": db_url})
        p.apps["svc_services"].state.clock = FrozenClock(p.gateway.state.clock.now())
        yield p


async def sign_in(p, username: str, **extra) -> dict:
    r = await p.client.post("/auth/v1/token", data={"grant_type": "password", "username": username,
                                                    "password": DEMO_PASSWORD, **extra})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def refused(r, action: str) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert (body["code"], body["action"]) == ("proxy.action_not_allowed", action), body
    assert action in body["detail"]


async def open_vote(p) -> str:
    """A staff topic of 幸福社区 with its vote open now."""
    staff = p.headers("staff1")
    t = await p.client.post("/services/v1/topics", headers=staff, json={
        "title": "幸福社区健身器材更新", "description": "更新小区东侧健身器材。", "category": "facilities",
        "scope_kind": "community", "scope_code": XF, "source": "staff"})
    assert t.status_code == 201, t.text
    now = p.apps["svc_services"].state.clock.now()
    v = await p.client.post(f"/services/v1/topics/{t.json()['id']}/vote", headers=staff, json={
        "options": ["同意", "反对"], "eligibility": "adult", "secret": True, "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(days=2)).isoformat()})
    assert v.status_code == 201, v.text
    return t.json()["id"]


async def resolve(p, request_id: str) -> None:
    """accepted, started and resolved by staff: at version 4"""
    for version, (who, action, note) in enumerate(
            (("grid1", "accept", None), ("staff1", "start", None), ("staff1", "resolve", "已修好")), start=1):
        r = await p.client.post(f"/services/v1/requests/{request_id}/transitions", headers=p.headers(who),
                                json={"action": action, "note": note, "version": version})
        assert r.status_code == 200, r.text


async def test_a_helper_acts_only_as_authorised(platform, caplog):
    p, c = platform, platform.client
    tid = await open_vote(p)
    now = p.gateway.state.clock.now()

    # 张伟 (P1) authorises proxy1 to submit requests for him, nothing else
    resident = await sign_in(p, "resident1")
    grant = {"helper": "proxy1", "actions": ["requests.submit"], "expires_at": (now + timedelta(days=30)).isoformat()}
    keyed = resident | {"Idempotency-Key": "grant-proxy1-1"}
    r = await c.post("/auth/v1/proxies", headers=keyed, json=grant)
    assert r.status_code == 201, r.text
    record = r.json()
    assert record["actions"] == ["requests.submit"]
    # his app retries: the same answer, one record; the key with other content is refused
    again = await c.post("/auth/v1/proxies", headers=keyed, json=grant)
    assert (again.status_code, again.headers["Idempotency-Replayed"], again.json()) == (201, "true", record)
    mine = (await c.get("/auth/v1/proxies", headers=resident)).json()
    assert [a["id"] for a in mine if a["helper"] == "proxy1"] == [record["id"]]
    r = await c.post("/auth/v1/proxies", headers=keyed, json=grant | {"actions": ["requests"]})
    assert (r.status_code, r.json()["code"]) == (422, "idempotency_key_reused"), r.text
    helper = await sign_in(p, "proxy1", acting_for=P1)
    assert jwt.decode(helper["Authorization"][7:], options={"verify_signature": False})["acting_actions"] == [
        "requests.submit"]

    # it submits for him: the request is his, the timeline names who acted for whom
    r = await c.post("/services/v1/requests", headers=helper, json=SUBMIT)
    assert r.status_code == 201, r.text
    req = r.json()
    first = (await c.get(f"/services/v1/requests/{req['id']}/timeline", headers=resident)).json()[0]
    assert (req["person_id"], first["acting_for"], first["role"], first["actor"]) == (P1, P1, "proxy", "portal/proxy1")

    # and nothing else: rating, voting, commenting, his inbox, booking, a survey; each refusal in the audit log
    await resolve(p, req["id"])
    caplog.set_level(logging.WARNING, logger="onenet.audit")
    refused(await c.post(f"/services/v1/requests/{req['id']}/transitions", headers=helper,
                         json={"action": "rate", "rating": 5, "version": 4}), "requests.rate")
    refused(await c.post(f"/services/v1/requests/{req['id']}/transitions", headers=helper,
                         json={"action": "reopen", "note": "又漏了", "version": 4}), "requests.reopen")
    refused(await c.post(f"/services/v1/topics/{tid}/ballots", headers=helper, json={"option": "同意"}),
            "deliberation.vote")
    refused(await c.post(f"/services/v1/topics/{tid}/comments", headers=helper, json={"text": "赞成"}),
            "deliberation.comment")
    refused(await c.get("/residents/v1/notifications", headers=helper), "notifications.inbox")
    refused(await c.post("/matching/v1/bookings", headers=helper, json={}), "bookings.book")
    refused(await c.post("/metrics/v1/surveys/any/responses", headers=helper, json={}), "surveys.respond")
    audited = [rec for rec in caplog.records if getattr(rec, "audit", None) == "proxy.action_refused"]
    assert {(a.actor, a.acting_for, a.action) for a in audited} >= {
        ("proxy1", P1, "requests.rate"), ("proxy1", P1, "deliberation.vote"), ("proxy1", P1, "notifications.inbox")}
    assert all(a.proxy_authorisation == record["id"] for a in audited)
    # the person himself is untouched by his helper's limits
    r = await c.post(f"/services/v1/requests/{req['id']}/transitions", headers=resident,
                     json={"action": "rate", "rating": 5, "version": 4})
    assert r.status_code == 200, r.text

    # proxy1 acting for 王秀英 (P3) under the demo record, which allows every act: it may
    full = await sign_in(p, "proxy1", acting_for=P3)
    r = await c.post("/services/v1/requests", headers=full, json=SUBMIT | {"description": "王阿姨家水管漏水。"})
    assert r.status_code == 201, r.text
    other = r.json()
    assert other["person_id"] == P3
    await resolve(p, other["id"])
    r = await c.post(f"/services/v1/requests/{other['id']}/transitions", headers=full,
                     json={"action": "rate", "rating": 4, "version": 4})
    assert (r.status_code, r.json()["state"]) == (200, "rated"), r.text
    r = await c.post(f"/services/v1/topics/{tid}/ballots", headers=full, json={"option": "同意"})
    assert r.status_code in (200, 201), r.text
    assert (await c.get("/residents/v1/notifications", headers=full)).status_code == 200
    # …but still only for her: the request of 张伟 is not hers to rate (whatever the acts)
    r = await c.post(f"/services/v1/requests/{req['id']}/transitions", headers=full,
                     json={"action": "close", "version": 5})
    assert r.status_code in (403, 404), r.text
    assert r.json()["code"] != "proxy.action_not_allowed"

    # a helper names only a person it holds a valid record for
    r = await c.post("/auth/v1/token", data={"grant_type": "password", "username": "proxy1",
                                             "password": DEMO_PASSWORD, "acting_for": person_id("P4")})
    assert (r.status_code, r.json()["errors"][0]["code"]) == (403, "proxy.not_authorised"), r.text

    # revoked: the helper's session under it is refused at once, and no new one acts for him
    r = await c.post(f"/auth/v1/proxies/{record['id']}/revoke", headers=resident)
    assert r.status_code == 200, r.text
    r = await c.post("/services/v1/requests", headers=helper, json=SUBMIT)
    assert (r.status_code, r.json()["code"]) == (401, "session_revoked"), r.text
    r = await c.post("/auth/v1/token", data={"grant_type": "password", "username": "proxy1",
                                             "password": DEMO_PASSWORD, "acting_for": P1})
    assert r.status_code == 403, r.text


async def test_an_expired_authorisation_gives_nothing(platform):
    from sqlalchemy import update

    from gateway.accounts.models import ProxyAuthorisation

    p, c = platform, platform.client
    now = p.gateway.state.clock.now()
    resident = await sign_in(p, "resident1")
    r = await c.post("/auth/v1/proxies", headers=resident, json={
        "helper": "proxy1", "actions": ["requests.fly"], "expires_at": (now + timedelta(hours=1)).isoformat()})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("actions"), r.text
    r = await c.post("/auth/v1/proxies", headers=resident, json={
        "helper": "proxy1", "actions": ["requests"], "expires_at": (now + timedelta(hours=1)).isoformat()})
    assert r.status_code == 201, r.text
    record = r.json()
    assert record["actions"] == ["requests.cancel", "requests.close", "requests.rate", "requests.reopen",
                                 "requests.submit"]   # a group is kept as its acts
    answer = (await c.post("/auth/v1/token", data={"grant_type": "password", "username": "proxy1",
                                                   "password": DEMO_PASSWORD, "acting_for": P1})).json()
    helper = {"Authorization": f"Bearer {answer['access_token']}"}
    assert (await c.post("/services/v1/requests", headers=helper, json=SUBMIT)).status_code == 201
    # its tokens never outlive the record
    exp = jwt.decode(answer["access_token"], options={"verify_signature": False})["exp"]
    assert exp <= (now + timedelta(hours=1)).timestamp() + 1

    # the hour has gone by (the record's end moved to the past, as the clock would)
    async with p.gateway.state.db.session() as s, s.begin():
        await s.execute(update(ProxyAuthorisation).where(ProxyAuthorisation.id == record["id"]).values(
            expires_at=now - timedelta(seconds=1)))
    assert (await c.get(f"/auth/v1/proxies/{record['id']}", headers=resident)).json()["status"] == "expired"
    r = await c.post("/auth/v1/token", data={"grant_type": "password", "username": "proxy1",
                                             "password": DEMO_PASSWORD, "acting_for": P1})
    assert (r.status_code, r.json()["errors"][0]["code"]) == (403, "proxy.not_authorised"), r.text
    r = await c.post("/auth/v1/token", data={"grant_type": "refresh_token", "refresh_token": answer["refresh_token"]})
    assert r.status_code in (400, 401), r.text


async def test_a_write_is_refused_unless_it_names_its_act(platform, caplog):
    """The person's record, tags, consents and time-bank points are acts a record names or not (profile.*,
    timebank.redeem); any other write a helper tries for the person is no act at all, refused by default (403
    `proxy.not_an_act`), whatever the record allows and whatever the route's own person rules would say."""
    p, c = platform, platform.client
    now = p.gateway.state.clock.now()
    resident = await sign_in(p, "resident1")
    r = await c.post("/auth/v1/proxies", headers=resident, json={
        "helper": "proxy1", "actions": ["requests"], "expires_at": (now + timedelta(days=7)).isoformat()})
    assert r.status_code == 201, r.text
    record = r.json()
    helper = await sign_in(p, "proxy1", acting_for=P1)
    version = (await c.get(f"/residents/v1/persons/{P1}", headers=helper)).json()["version"]
    caplog.set_level(logging.WARNING, logger="onenet.audit")
    refused(await c.patch(f"/residents/v1/persons/{P1}", headers=helper,
                          json={"version": version, "accessibility_needs": ["large_font"]}), "profile.contact")
    refused(await c.put(f"/residents/v1/persons/{P1}/tags/living_alone", headers=helper,
                        json={"code": "living_alone", "source": "self"}), "profile.tags")
    refused(await c.post(f"/residents/v1/persons/{P1}/consents", headers=helper,
                         json={"purpose": "contact", "granted": True, "channel": "visit"}), "profile.consents")
    refused(await c.post("/matching/v1/timebank/redemptions", headers=helper, json={}), "timebank.redeem")

    # a write no record can allow: refused before the route's own rules, the same for any id, audited
    for method, path, body in (
            ("POST", "/residents/v1/households", {}),
            ("POST", "/services/v1/requests/no-such-request/materials/fetch", None),
            ("PUT", f"/services/v1/requester_profiles/{P1}", {})):
        r = await c.request(method, path, headers=helper, json=body)
        assert (r.status_code, r.json()["code"]) == (403, "proxy.not_an_act"), (path, r.text)
    audited = [rec for rec in caplog.records if getattr(rec, "audit", None) == "proxy.action_refused"]
    assert {(a.method, a.path) for a in audited if a.action is None} == {
        ("POST", "/residents/v1/households"), ("POST", "/services/v1/requests/no-such-request/materials/fetch"),
        ("PUT", f"/services/v1/requester_profiles/{P1}")} and all(
        (a.actor, a.acting_for, a.proxy_authorisation) == ("proxy1", P1, record["id"]) for a in audited)
    # a search only reads (the person rules show the helper its person alone)
    r = await c.post("/residents/v1/persons/search", headers=helper, json={})
    assert r.status_code == 200 and {x["id"] for x in r.json()["items"]} <= {P1}, r.text
    # the person, and staff, are untouched by the default
    r = await c.patch(f"/residents/v1/persons/{P1}", headers=resident,
                      json={"version": version, "accessibility_needs": ["large_font"]})
    assert r.status_code == 200, r.text

    # under the demo record of 王秀英 (every act) the helper keeps her contact details and consents…
    full = await sign_in(p, "proxy1", acting_for=P3)
    version = (await c.get(f"/residents/v1/persons/{P3}", headers=full)).json()["version"]
    r = await c.patch(f"/residents/v1/persons/{P3}", headers=full,
                      json={"version": version, "preferred_channel": "phone"})
    assert r.status_code == 200, r.text
    r = await c.post(f"/residents/v1/persons/{P3}/consents", headers=full,
                     json={"purpose": "contact", "granted": True, "channel": "visit"})
    assert r.status_code == 201, r.text
    # …but a write that is no act stays refused
    r = await c.post("/residents/v1/households", headers=full, json={})
    assert (r.status_code, r.json()["code"]) == (403, "proxy.not_an_act"), r.text


def test_the_acts_are_one_vocabulary():
    """Every route declaring an act names one of common.acting's (a route whose handler checks it declares it with
    `checked_by_handler`); with a request transition's owner actions they are all of them, so the gateway offers
    no act that nothing enforces (and any write route declaring none is refused to helpers)."""
    from importlib import import_module

    from common import acting

    def routes(of):
        for r in of:
            inner = getattr(r, "original_router", None)  # an included router (FastAPI resolves it lazily)
            yield from routes(inner.routes) if inner is not None else (r,)

    declared = set()
    for pkg in ("svc_services", "svc_residents", "svc_matching", "svc_metrics"):
        for route in routes(import_module(f"{pkg}.app").create_app().routes):
            for dep in getattr(getattr(route, "dependant", None), "dependencies", ()):
                act = getattr(dep.call, "acting_action", None)
                if isinstance(act, str):
                    declared.add(act)
    by_action = {f"requests.{a}" for a in ("rate", "reopen", "close", "cancel")}  # from_field("action", "requests")
    assert declared <= set(acting.ACTIONS)
    assert declared | by_action == set(acting.ACTIONS)
