"""The part of the platform that people's accounts touch, in one process: the gateway (on the test's backend),
the department emulators with the SMS platform, svc_residents and svc_services (each on a database of its own on
the same backend), the demo district seeded, the services' outgoing calls going back through the gateway.

Used by tests/gateway/test_binding.py and the kiosk and proxy tests: `people` (import `people_fixture` into the test module) yields a namespace with `client`
(the gateway), `gw`, `apps`, `clock` (the gateway's), `emulators`, `sms_code(phone)` and `phone_session(phone)`.
"""
from __future__ import annotations

from contextlib import AsyncExitStack
from types import SimpleNamespace

import httpx
import pytest

from common.acting import GROUPS
from common.auth import TokenVerifier
from common.clock import FrozenClock
from common.keys import jwks_document, load_signing_keys
from gateway.accounts.phone import SMS_GRANT
from tests.conftest import POSTGRES_URL, _create_pg_database, migrate_database, start_service
from tests.gateway.conftest import START


@pytest.fixture(name="people")
async def people_fixture(db_url, tmp_path, gateway_keys_dir):
    from deploy.demo import DEMO_USERS  # noqa: F401 - the demo data the seeds write
    from gateway.app import create_app
    from gateway.departments.app import EmulatorSettings, create_app as create_emulators
    from gateway.seed import seed_demo as seed_gateway
    from gateway.settings import GatewaySettings
    from svc_residents.seed import seed_demo as seed_residents
    from svc_services.seed import seed_demo as seed_services
    from tests.inprocess import _rewire

    jwks = jwks_document(load_signing_keys(gateway_keys_dir))
    keys = tmp_path / "fields.json"
    async with AsyncExitStack() as stack:
        urls = {}
        for pkg in ("svc_residents", "svc_services"):
            if db_url.startswith("postgresql"):
                url, drop = await _create_pg_database(POSTGRES_URL)
                stack.push_async_callback(drop)
                urls[pkg] = url
            else:
                urls[pkg] = f"sqlite+aiosqlite:///{tmp_path}/{pkg}.db"
        residents = (await start_service(stack, "svc_residents", urls["svc_residents"], jwks,
                                         field_keys_file=keys)).app
        services = (await start_service(stack, "svc_services", urls["svc_services"], jwks,
                                        sla_scan_enabled=False)).app
        emu_settings = EmulatorSettings(jwks_url=None)
        emulators = create_emulators(emu_settings, verifier=TokenVerifier(emu_settings, jwks=jwks))
        await stack.enter_async_context(emulators.router.lifespan_context(emulators))
        emulators.state.sms.test_reads = True

        await migrate_database("gateway", db_url)
        settings = GatewaySettings(database_url=db_url, keys_dir=gateway_keys_dir, outbox_relay_enabled=False,
                                   rate_limit_enabled=False, catalogue_from_openapi=False, upstream_retries=0,
                                   audit_writer_process=False, sms_test_reads=True, field_keys_file=keys)
        transports = {"departments": httpx.ASGITransport(app=emulators),
                      "residents": httpx.ASGITransport(app=residents),
                      "services": httpx.ASGITransport(app=services), "open311": httpx.ASGITransport(app=services)}
        clock = FrozenClock(START)
        gw = create_app(settings, transports=transports, clock=clock)
        await seed_gateway(gw.state.db, clock=clock)
        await seed_residents(residents.state.db, residents.state.protection)
        await seed_services(services.state.db)
        await stack.enter_async_context(gw.router.lifespan_context(gw))
        for app in (residents, services):
            _rewire(app, gw)

        async def residents_token() -> str:  # svc_residents' own client-credentials token (it holds the grants)
            return gw.state.token_issuer.issue(subject="svc_residents", member="svc_residents", role="system",
                                               scopes=[])["access_token"]

        residents.state.service_token = residents_token
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw", timeout=30))

        async def sms_code(phone: str) -> str:
            r = await client.get("/auth/v1/testing/sms", params={"phone": phone})
            assert r.status_code == 200, r.text
            return r.json()["code"]

        async def phone_session(phone: str, **extra) -> dict:
            r = await client.post("/auth/v1/phone/codes", json={"phone": phone})
            assert r.status_code == 202, r.text
            r = await client.post("/auth/v1/token", data={"grant_type": SMS_GRANT, "phone": phone,
                                                          "code": await sms_code(phone), **extra})
            assert r.status_code == 200, r.text
            clock.advance(seconds=61)  # past the resend back-off for the next code
            body = r.json()
            body["h"] = {"Authorization": f"Bearer {body['access_token']}"}
            return body

        def staff(name: str) -> dict:
            from deploy.demo import DEMO_USERS

            u = next(u for u in DEMO_USERS if u["username"] == name)
            tok = gw.state.token_issuer.issue(
                subject=name, member="portal", role=u["role"], scopes=list(u["scopes"]), acting_for=u.get("acting_for"),
                extra={"acting_actions": sorted(GROUPS)} if u.get("acting_for") else None)["access_token"]
            return {"Authorization": f"Bearer {tok}"}

        yield SimpleNamespace(client=client, gw=gw, apps={"svc_residents": residents, "svc_services": services},
                              emulators=emulators, clock=clock, sms_code=sms_code, phone_session=phone_session,
                              staff=staff)
