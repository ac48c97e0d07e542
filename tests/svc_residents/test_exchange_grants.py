"""Departments and member systems read persons only under an exchange grant on `residents.persons`, with clear
values only for the fields the grant covers, every clear read audited with the grant's purpose.

First in-process against svc_residents alone (grants given in code), then end to end through a real gateway app
(grant applied for and approved on the exchange, the call forwarded and masked by the gateway)."""
from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from deploy import demo
from svc_residents.grants import PERSONS_RESOURCE, GrantInfo, StaticGrants
from tests.svc_residents.conftest import P

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
    seeded.app.state.grant_source = StaticGrants([_grant(expires_at=datetime.now(timezone.utc) - timedelta(1))])
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


def test_catalogue_fields_match_the_exchange_catalogue():
    from gateway.exchange.catalogue_data import BUILTIN_RESOURCES
    from svc_residents.persons.exchange import CATALOGUE_FIELDS

    res = next(r for r in BUILTIN_RESOURCES if r["code"] == PERSONS_RESOURCE)
    declared = {f["path"]: (f["grade"], f["personal"], f["sensitive"], f["mask"]) for f in res["fields"]}
    assert declared == CATALOGUE_FIELDS


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
        await seed_demo(residents.app.state.db, residents.app.state.protection)
        gw_url = f"sqlite+aiosqlite:///{tmp_path}/gw.db"
        await migrate_database("gateway", gw_url)
        gw = create_gateway(GatewaySettings(database_url=gw_url, keys_dir=keys_dir, outbox_relay_enabled=False,
                                            upstream_retries=0, catalogue_from_openapi=False),
                            transports={"residents": httpx.ASGITransport(app=residents.app)})
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
        "expires_at": (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()})
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


async def test_without_exchange_credentials_no_grant_applies(seeded, auth):
    """The default app in tests has no client credentials: a grant cannot be checked, so the read is refused."""
    r = await seeded.get(f"/residents/v1/persons/{P('P1')}", headers=_dept_system(auth))
    assert r.status_code == 403 and r.json()["code"] == "exchange.grants_unconfigured"
