"""Departments and member systems read persons only under an exchange grant on `residents.persons`, with clear
values only for the fields the grant covers, every clear read audited with the grant's purpose.

First in-process against svc_residents alone (grants given in code), then end to end through a real gateway app
(grant applied for and approved on the exchange, the call forwarded and masked by the gateway)."""
from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from common.clock import FrozenClock
from deploy import demo
from svc_residents.grants import HOUSEHOLDS_RESOURCE, PERSONS_RESOURCE, GrantInfo, StaticGrants
from tests.svc_residents.conftest import START, P

P1_ID = next(p[2] for p in demo.PERSONS if p[0] == "P1")
P7_ID = next(p[2] for p in demo.PERSONS if p[0] == "P7")
VIA_EXCHANGE = {"x-onenet-resource": PERSONS_RESOURCE}


def _dept_system(auth, member="dept-minzheng", dept="minzheng"):
    return {**auth(role="dept_staff", user=member, member=member, scopes=[f"dept:{dept}"]), **VIA_EXCHANGE}


def _grant(consumer="dept-minzheng", fields=("id", "name", "id_number"), **kw):
    return GrantInfo(id=kw.pop("id", "g-1"), resource=PERSONS_RESOURCE, consumer=consumer,
                     fields=None if fields is None else frozenset(fields), purpose=kw.pop("purpose", "低保复核"), **kw)


async def _audits(client):
    from svc_residents.audit.models import AccessAudit

    async with client.app.state.db.session() as s:
        return list((await s.execute(select(AccessAudit).order_by(AccessAudit.id))).scalars())


async def test_without_grant_a_department_is_refused(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_grant(consumer="dept-renshe")])
    h = _dept_system(auth)
    r = await seeded.post("/residents/v1/persons/search", json={"id_number": P1_ID}, headers=h)
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant"
    assert (await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=h)).status_code == 403
    # an expired grant is no grant
    seeded.app.state.grant_source = StaticGrants([_grant(expires_at=seeded.app.state.clock.now() - timedelta(1))])
    assert (await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=h)).status_code == 403
    assert await _audits(seeded) == []


async def test_grant_reveals_only_covered_fields_and_audits(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_grant()])
    h = {**_dept_system(auth), "x-onenet-purpose": quote("核对低保申请人身份", safe="")}
    r = await seeded.post("/residents/v1/persons/search", json={"id_number": P7_ID}, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    [item] = r.json()["items"]
    assert item["id"] == P("P7") and item["id_number"] == P7_ID and item["name"] == "赵敏"
    assert item["phone"] == "138****0007"  # personal, outside the grant: masked
    assert "tags" not in item  # sensitive, outside the grant: left out
    assert "accessibility_needs" not in item  # sensitive: left out
    assert item["age"] is None and item["sex"] == "*" and "*" in item["birth_date"]  # personal: masked
    assert "created_at" in item and item["grid_code"]  # general: passed
    assert item["household_id"] != demo.household_id("4") and "*" in item["household_id"]
    r = await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=h)
    assert r.status_code == 200 and r.json()["id_number"] == P1_ID
    audits = await _audits(seeded)
    assert [(a.subject_id, a.fields, a.purpose, a.member) for a in audits] == [
        (P("P7"), ["id_number"], "低保复核", "dept-minzheng"), (P("P1"), ["id_number"], "低保复核", "dept-minzheng")]
    assert audits[0].extra["grant_id"] == "g-1" and audits[0].extra["caller_purpose"] == "核对低保申请人身份"


async def test_grant_of_every_field_and_a_narrow_grant(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_grant(fields=None)])
    h = _dept_system(auth)
    item = (await seeded.get(f"/residents/v1/persons/{P('P7')}", headers=h)).json()
    assert item["phone"] == "13800010007" and {t["code"] for t in item["tags"]} == {"elderly", "very_old", "dibao"}
    assert (await _audits(seeded))[-1].fields == ["id_number", "phone"]
    seeded.app.state.grant_source = StaticGrants([_grant(fields=("id",))])
    item = (await seeded.get(f"/residents/v1/persons/{P('P7')}", headers=h)).json()
    assert "id_number" not in item and item["name"] == "赵*" and item["revealed"] is False
    assert len(await _audits(seeded)) == 1  # nothing clear, nothing to audit


async def test_grant_readers_only_look_up_by_exact_id_number(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_grant()])
    h = _dept_system(auth)
    r = await seeded.post("/residents/v1/persons/search", json={"name": "张"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id_number"
    r = await seeded.post("/residents/v1/persons/search", json={"id_number": P1_ID, "tag": "dibao"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tag"
    r = await seeded.post("/residents/v1/persons/search", json={"id_number": "110105198003120113"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id_number"
    # nothing else opens up: households, consents, changes stay closed
    for url in (f"/residents/v1/households/{demo.household_id('1')}", f"/residents/v1/persons/{P('P1')}/consents",
                "/residents/v1/households"):
        assert (await seeded.get(url, headers=h)).status_code == 403, url


async def test_grant_needs_the_exchange_and_a_token_member(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_grant(), _grant(consumer="portal", id="g-2")])
    # straight to the service, not through the exchange: refused even with a grant
    h = auth(role="dept_staff", user="dept-minzheng", member="dept-minzheng", scopes=["dept:minzheng"])
    r = await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=h)
    assert r.status_code == 403 and r.json()["code"] == "exchange.required"
    # a clerk signed in through the portal uses their department's grant, not the portal's
    clerk = {**auth(role="dept_staff", user="dept_mz", member="portal", scopes=["dept:minzheng"]), **VIA_EXCHANGE}
    assert (await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=clerk)).status_code == 200
    other = {**auth(role="dept_staff", user="dept_rs", member="portal", scopes=["dept:renshe"]), **VIA_EXCHANGE}
    assert (await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=other)).status_code == 403
    # a provider or evaluator has no grant path at all
    for role in ("provider", "evaluator"):
        h = {**auth(role=role, user="dept-minzheng", member="dept-minzheng"), **VIA_EXCHANGE}
        assert (await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=h)).status_code == 403


async def test_registry_unreachable_fails_closed(seeded, auth):
    from svc_residents.grants import ExchangeGrants
    from common.http_client import ServiceClient

    def down(request):
        raise httpx.ConnectError("down")

    async def token():
        return "t"

    seeded.app.state.grant_source = ExchangeGrants(
        ServiceClient("exchange", "http://gw", retries=0, transport=httpx.MockTransport(down)), token)
    r = await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=_dept_system(auth))
    assert r.status_code == 503 and r.json()["code"] == "exchange.grants_unavailable"


async def test_a_cached_grant_ends_at_its_expiry(seeded, auth):
    """An expired grant is no grant, even while the registry's answer is still cached: the expiry is checked on
    the app's clock at every read, the cache only saves asking the registry again."""
    from common.http_client import ServiceClient
    from svc_residents.grants import ExchangeGrants

    expires = seeded.app.state.clock.now() + timedelta(minutes=1)
    asked = []

    def registry(request):
        asked.append(request.url.params["resource"])
        return httpx.Response(200, json={"items": [{
            "id": "g-1", "resource": PERSONS_RESOURCE, "consumer": "dept-minzheng", "live": True,
            "fields": ["id", "name"], "purpose": "低保复核", "expires_at": expires.isoformat()}], "next_cursor": None})

    async def token():
        return "t"

    seeded.app.state.grant_source = ExchangeGrants(
        ServiceClient("exchange", "http://gw", retries=0, transport=httpx.MockTransport(registry)), token,
        ttl_seconds=3600)
    h = _dept_system(auth)
    assert (await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=h)).status_code == 200
    seeded.app.state.clock.set(expires)
    r = await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=h)
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant"
    assert asked == [PERSONS_RESOURCE]  # refused from the cached answer, not from a new one


def test_the_service_masks_on_the_fields_the_exchange_catalogue_declares():
    from common.exchange_fields import HOUSEHOLD_FIELDS, PERSON_FIELDS
    from gateway.exchange.catalogue_data import BUILTIN_RESOURCES

    by_code = {r["code"]: r["fields"] for r in BUILTIN_RESOURCES}
    assert by_code[PERSONS_RESOURCE] is PERSON_FIELDS and by_code[HOUSEHOLDS_RESOURCE] is HOUSEHOLD_FIELDS


# ------------------------------------------------------------------ households under `residents.households`

VIA_HOUSEHOLDS = {"x-onenet-resource": HOUSEHOLDS_RESOURCE}
H4 = demo.household_id("4")


def _household_grant(consumer="dept-minzheng", fields=("id", "address"), **kw):
    return GrantInfo(id=kw.pop("id", "gh-1"), resource=HOUSEHOLDS_RESOURCE, consumer=consumer,
                     fields=None if fields is None else frozenset(fields), purpose=kw.pop("purpose", "入户核查"), **kw)


def _dept_households(auth, member="dept-minzheng", dept="minzheng"):
    return {**auth(role="dept_staff", user=member, member=member, scopes=[f"dept:{dept}"]), **VIA_HOUSEHOLDS}


async def test_household_grant_reads_one_household_with_covered_fields_and_audits(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_household_grant()])
    h = {**_dept_households(auth), "x-onenet-purpose": quote("入户核查低保家庭", safe="")}
    r = await seeded.get(f"/residents/v1/households/{H4}", headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["id"] == H4 and body["address"] == "和平街道安康路1号楼101"
    assert body["head_person_id"] != P("P7") and "*" in body["head_person_id"]  # personal, outside: masked
    assert body["grid_code"] and body["community_code"] and body["version"] >= 1  # general: passed
    assert "members" not in body  # the catalogue declares no member field: never through this grant
    [audit] = await _audits(seeded)
    assert (audit.subject_type, audit.subject_id, audit.fields, audit.purpose, audit.member) == (
        "household", H4, ["address"], "入户核查", "dept-minzheng")
    assert audit.extra["grant_id"] == "gh-1" and audit.extra["caller_purpose"] == "入户核查低保家庭"
    assert audit.extra["resource"] == HOUSEHOLDS_RESOURCE
    # every field of the resource: head in clear too, still no members
    seeded.app.state.grant_source = StaticGrants([_household_grant(fields=None)])
    body = (await seeded.get(f"/residents/v1/households/{H4}", headers=h)).json()
    assert body["head_person_id"] == P("P7") and "members" not in body
    assert (await _audits(seeded))[-1].fields == ["address", "head_person_id"]
    # unknown id: 404 as for anyone
    r = await seeded.get("/residents/v1/households/00000000-0000-0000-0000-000000000000", headers=h)
    assert r.status_code == 404


async def test_narrow_household_grant_masks_and_audits_nothing(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_household_grant(fields=("id",))])
    body = (await seeded.get(f"/residents/v1/households/{H4}", headers=_dept_households(auth))).json()
    assert body["id"] == H4
    assert body["address"] != "和平街道安康路1号楼101" and "*" in body["address"]  # personal: masked
    assert "*" in body["head_person_id"] and "members" not in body
    assert body["building_code"] == "110105001002001001"  # general: passed
    assert await _audits(seeded) == []  # nothing clear, nothing to audit


async def test_household_read_without_grant_is_refused(seeded, auth):
    h = _dept_households(auth)
    # another department's grant, a persons grant, an expired grant: no households grant for this caller
    for grants in ([_household_grant(consumer="dept-renshe")], [_grant()],
                   [_household_grant(expires_at=seeded.app.state.clock.now() - timedelta(1))]):
        seeded.app.state.grant_source = StaticGrants(grants)
        r = await seeded.get(f"/residents/v1/households/{H4}", headers=h)
        assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant", grants
        assert r.json()["resource"] == HOUSEHOLDS_RESOURCE
    # a households grant is not a persons grant, and vice versa
    seeded.app.state.grant_source = StaticGrants([_household_grant()])
    r = await seeded.get(f"/residents/v1/persons/{P('P7')}", headers={**h, **VIA_EXCHANGE})
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant"
    # the grant's resource must be the one named by the exchange
    r = await seeded.get(f"/residents/v1/households/{H4}", headers={**h, **VIA_EXCHANGE})
    assert r.status_code == 403 and r.json()["code"] == "exchange.required"
    # straight to the service, not through the exchange
    direct = auth(role="dept_staff", user="dept-minzheng", member="dept-minzheng", scopes=["dept:minzheng"])
    assert (await seeded.get(f"/residents/v1/households/{H4}", headers=direct)).status_code == 403
    # a provider or evaluator has no grant path at all
    for role in ("provider", "evaluator"):
        other = {**auth(role=role, user="dept-minzheng", member="dept-minzheng"), **VIA_HOUSEHOLDS}
        assert (await seeded.get(f"/residents/v1/households/{H4}", headers=other)).status_code == 403
    assert await _audits(seeded) == []


async def test_revoked_household_grant_is_refused(seeded, auth):
    source = StaticGrants([_household_grant()])
    seeded.app.state.grant_source = source
    h = _dept_households(auth)
    assert (await seeded.get(f"/residents/v1/households/{H4}", headers=h)).status_code == 200
    source.grants.clear()  # revoked on the exchange: no longer among the live grants
    r = await seeded.get(f"/residents/v1/households/{H4}", headers=h)
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant"


async def test_household_grant_does_not_open_listing_or_the_file(seeded, auth):
    seeded.app.state.grant_source = StaticGrants([_household_grant(fields=None)])
    h = _dept_households(auth)
    for url in ("/residents/v1/households", f"/residents/v1/households/{H4}/file"):
        assert (await seeded.get(url, headers=h)).status_code == 403, url
    r = await seeded.patch(f"/residents/v1/households/{H4}", headers=h, json={"version": 1, "address": "x"})
    assert r.status_code == 403
    assert await _audits(seeded) == []


# ------------------------------------------------------------------ through a real gateway (in process)

@pytest.fixture
async def through_gateway(tmp_path, backend):
    if backend != "sqlite":
        pytest.skip("the end-to-end exchange run is the same on both backends; run once")
    from common.http_client import ServiceClient
    from common.keys import jwks_document, load_signing_keys
    from gateway.app import create_app as create_gateway
    from gateway.settings import GatewaySettings
    from svc_residents.grants import ExchangeGrants
    from svc_residents.seed import seed_demo
    from tests.conftest import migrate_database, start_service

    keys_dir = tmp_path / "gw-keys"
    jwks = jwks_document(load_signing_keys(keys_dir))
    async with AsyncExitStack() as stack:
        residents = await start_service(stack, "svc_residents", f"sqlite+aiosqlite:///{tmp_path}/res.db", jwks,
                                        field_keys_file=tmp_path / "keys" / "fields.json")
        clock = residents.app.state.clock = FrozenClock(START)  # one "now" for the service and the exchange
        await seed_demo(residents.app.state.db, residents.app.state.protection, clock=clock)
        gw_url = f"sqlite+aiosqlite:///{tmp_path}/gw.db"
        await migrate_database("gateway", gw_url)
        gw = create_gateway(GatewaySettings(database_url=gw_url, keys_dir=keys_dir, outbox_relay_enabled=False,
                                            upstream_retries=0, catalogue_from_openapi=False),
                            transports={"residents": httpx.ASGITransport(app=residents.app)}, clock=clock)
        await stack.enter_async_context(gw.router.lifespan_context(gw))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw"))

        def token(member, *, user=None, role="dept_staff", scopes=()):
            return {"Authorization": "Bearer " + gw.state.token_issuer.issue(
                subject=user or member, member=member, role=role, scopes=list(scopes))["access_token"]}

        async def service_token():
            return token("svc_residents", role="system")["Authorization"][7:]

        residents.app.state.grant_source = ExchangeGrants(
            ServiceClient("exchange", "http://gw", retries=0, transport=httpx.ASGITransport(app=gw)),
            service_token, ttl_seconds=0)
        yield client, residents, token


async def test_through_the_gateway(through_gateway):
    client, residents, token = through_gateway
    mz = token("dept-minzheng", scopes=["dept:minzheng"])
    search = "/residents/v1/persons/search"
    r = await client.post(search, json={"id_number": P7_ID}, headers=mz)
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant"
    # apply (有条件共享: the owner decides) and approve a narrow scope as the owner, svc_residents
    r = await client.post("/exchange/v1/grants", headers=mz, json={
        "resource": PERSONS_RESOURCE, "purpose": "低保对象复核", "fields": ["id", "name", "id_number"]})
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    gid = r.json()["id"]
    owner = token("svc_residents", role="system")
    r = await client.post(f"/exchange/v1/grants/{gid}/approve", headers=owner, json={
        "fields": ["id", "name", "id_number"],
        "expires_at": (START + timedelta(days=30)).isoformat()})
    assert r.status_code == 200 and r.json()["live"], r.text

    r = await client.post(search, json={"id_number": P7_ID}, headers=mz)
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["id_number"] == P7_ID and item["name"] == "赵敏" and item["phone"] == "138****0007"
    assert "tags" not in item and item["age"] is None and "*" in item["birth_date"]
    r = await client.get(f"/residents/v1/persons/{P('P7')}", headers=mz)
    assert r.status_code == 200 and r.json()["id_number"] == P7_ID
    # a clerk of the same department signed in through the portal (the gateway leaves the decision to the service)
    clerk = token("portal", user="dept_mz", scopes=["dept:minzheng"])
    assert (await client.get(f"/residents/v1/persons/{P('P1')}", headers=clerk)).json()["id_number"] == P1_ID
    rs_clerk = token("portal", user="dept_rs", scopes=["dept:renshe"])
    assert (await client.get(f"/residents/v1/persons/{P('P1')}", headers=rs_clerk)).status_code == 403
    # a caller cannot forge the grant: its own x-onenet-resource is stripped, its role still needs a grant
    rs = token("dept-renshe", scopes=["dept:renshe"])
    r = await client.get(f"/residents/v1/persons/{P('P1')}", headers={**rs, **VIA_EXCHANGE})
    assert r.status_code == 403
    audits = await _audits(residents)
    assert [(a.member, a.purpose, a.extra["grant_id"]) for a in audits] == [
        ("dept-minzheng", "低保对象复核", gid), ("dept-minzheng", "低保对象复核", gid),
        ("portal", "低保对象复核", gid)]
    # revoked: refused at once (the gateway for the member system, the service for the clerk)
    r = await client.post(f"/exchange/v1/grants/{gid}/revoke", headers=owner, json={"reason": "复核结束"})
    assert r.status_code == 200, r.text
    assert (await client.get(f"/residents/v1/persons/{P('P7')}", headers=mz)).status_code == 403
    assert (await client.get(f"/residents/v1/persons/{P('P1')}", headers=clerk)).status_code == 403


async def test_households_through_the_gateway(through_gateway):
    client, residents, token = through_gateway
    mz = token("dept-minzheng", scopes=["dept:minzheng"])
    clerk = token("portal", user="dept_mz", scopes=["dept:minzheng"])
    url = f"/residents/v1/households/{H4}"
    r = await client.get(url, headers=mz)
    assert r.status_code == 403
    r = await client.post("/exchange/v1/grants", headers=mz, json={
        "resource": HOUSEHOLDS_RESOURCE, "purpose": "入户核查", "fields": ["id", "address"]})
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    owner = token("svc_residents", role="system")
    r = await client.post(f"/exchange/v1/grants/{gid}/approve", headers=owner, json={
        "fields": ["id", "address"], "expires_at": (START + timedelta(days=30)).isoformat()})
    assert r.status_code == 200 and r.json()["live"], r.text
    for h in (mz, clerk):  # the member system (checked by the gateway too) and a clerk through the portal
        r = await client.get(url, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["address"] == "和平街道安康路1号楼101" and "*" in body["head_person_id"]
        assert "members" not in body
    # listing stays closed, and a households grant reads no person
    assert (await client.get("/residents/v1/households", headers=clerk)).status_code == 403
    assert (await client.get(f"/residents/v1/persons/{P('P7')}", headers=clerk)).status_code == 403
    audits = await _audits(residents)
    assert [(a.subject_type, a.member, a.fields, a.extra["grant_id"]) for a in audits] == [
        ("household", "dept-minzheng", ["address"], gid), ("household", "portal", ["address"], gid)]
    r = await client.post(f"/exchange/v1/grants/{gid}/revoke", headers=owner, json={"reason": "核查结束"})
    assert r.status_code == 200, r.text
    assert (await client.get(url, headers=mz)).status_code == 403
    assert (await client.get(url, headers=clerk)).status_code == 403


async def test_without_exchange_credentials_no_grant_applies(seeded, auth):
    """The default app in tests has no client credentials: a grant cannot be checked, so the read is refused."""
    r = await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=_dept_system(auth))
    assert r.status_code == 403 and r.json()["code"] == "exchange.grants_unconfigured"
