"""The whole platform in one process: the gateway in front of the four services and the department emulators,
each on its own freshly migrated SQLite database with the demo district seeded, wired by ASGI transports (no
ports). Used by the schemathesis fuzz run (tests/fuzz) and the authorisation matrix (tests/authz).

The services' own outgoing calls (svc_services → matching / exchange, svc_residents → services / matching /
departments) go back through the in-process gateway, as they would in production.
"""
from __future__ import annotations

import asyncio
import threading
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common import acting
from common.auth import TokenVerifier
from common.http_client import ServiceClient
from common.keys import jwks_document, load_signing_keys
from deploy import demo
from tests.conftest import migrate_database, start_service

SERVICES = ("svc_services", "svc_residents", "svc_matching", "svc_metrics")
UPSTREAM_OF = {"services": "svc_services", "residents": "svc_residents", "matching": "svc_matching",
               "metrics": "svc_metrics", "open311": "svc_services"}

# Demo users (deploy/demo.py) by name, plus a member system calling with its own client-credentials token.
USERS: dict[str, dict[str, Any]] = {u["username"]: dict(role=u["role"], scopes=list(u["scopes"]),
                                                        acting_for=u.get("acting_for"))
                                    for u in demo.DEMO_USERS}
USERS["system"] = dict(role="system", scopes=[], acting_for=None, member="kiosk")


@dataclass
class Platform:
    gateway: Any
    apps: dict[str, Any]
    client: httpx.AsyncClient
    tmp: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, name: str, **over: Any) -> str:
        """A gateway-issued token for a demo user (`resident1`, `grid1`, …, `system`)."""
        spec = {**USERS[name], **over}
        member = spec.pop("member", "portal")
        # a helper's token carries what its authorisation allows (the demo record: every act, common.acting)
        actions = spec.get("acting_actions", sorted(acting.GROUPS)) if spec.get("acting_for") else None
        return self.gateway.state.token_issuer.issue(
            subject=spec.pop("user", name), member=member, role=spec["role"], scopes=list(spec["scopes"]),
            acting_for=spec.get("acting_for"),
            extra={"acting_actions": actions} if actions is not None else None)["access_token"]

    def headers(self, name: str, **over: Any) -> dict[str, str]:
        if not over:
            if name not in self.tokens:
                self.tokens[name] = self.token(name)
            return {"Authorization": f"Bearer {self.tokens[name]}"}
        return {"Authorization": f"Bearer {self.token(name, **over)}"}


def _rewire(app: Any, gateway: Any) -> None:
    """Point every pooled ServiceClient of a service at the in-process gateway."""
    def swap(c: ServiceClient) -> None:
        old = c._client
        c._client = httpx.AsyncClient(base_url="http://gw", timeout=old.timeout,
                                      transport=httpx.ASGITransport(app=gateway))
        c.retries = 0

    for value in list(app.state._state.values()):
        if isinstance(value, ServiceClient):
            swap(value)
        elif isinstance(value, dict):
            for v in value.values():
                if isinstance(v, ServiceClient):
                    swap(v)


async def start_platform(stack: AsyncExitStack, tmp: Path, *, seed: bool = True,
                         urls: dict[str, str] | None = None) -> Platform:
    """`urls`: a database of its own for some services (e.g. svc_services on PostgreSQL), SQLite files else."""
    from common.crypto import FieldProtection  # noqa: F401 - svc_residents' seed needs its protection
    from gateway.app import create_app
    from gateway.departments.app import EmulatorSettings, create_app as create_emulators
    from gateway.settings import GatewaySettings

    tmp.mkdir(parents=True, exist_ok=True)
    keys_dir = tmp / "keys"
    jwks = jwks_document(load_signing_keys(keys_dir))
    apps: dict[str, Any] = {}
    overrides = {"svc_services": {"sla_scan_enabled": False}, "svc_matching": {"offer_sweeper_enabled": False}}
    for pkg in SERVICES:
        client = await start_service(stack, pkg, (urls or {}).get(pkg) or f"sqlite+aiosqlite:///{tmp}/{pkg}.db", jwks,
                                     **overrides.get(pkg, {}))
        apps[pkg] = client.app
    emu_settings = EmulatorSettings(jwks_url=None)
    emulators = create_emulators(emu_settings, verifier=TokenVerifier(emu_settings, jwks=jwks))
    await stack.enter_async_context(emulators.router.lifespan_context(emulators))
    apps["departments"] = emulators

    gw_url = f"sqlite+aiosqlite:///{tmp}/gateway.db"
    await migrate_database("gateway", gw_url)
    settings = GatewaySettings(database_url=gw_url, keys_dir=keys_dir, outbox_relay_enabled=False,
                               rate_limit_enabled=False, catalogue_from_openapi=False, upstream_retries=0)
    transports = {name: httpx.ASGITransport(app=apps[pkg]) for name, pkg in UPSTREAM_OF.items()}
    transports["departments"] = httpx.ASGITransport(app=emulators)
    gw = create_app(settings, transports=transports)
    if seed:
        await _seed(gw, apps)
    await stack.enter_async_context(gw.router.lifespan_context(gw))
    for pkg in SERVICES:
        _rewire(apps[pkg], gw)
    client = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw", timeout=30))
    return Platform(gateway=gw, apps=apps, client=client, tmp=tmp)


async def _seed(gw: Any, apps: dict[str, Any]) -> None:
    from gateway.seed import seed_demo as seed_gateway
    from svc_matching.seed import seed_demo as seed_matching
    from svc_metrics.seed import seed_demo as seed_metrics
    from svc_residents.seed import seed_demo as seed_residents
    from svc_services.seed import seed_demo as seed_services

    await seed_gateway(gw.state.db)
    await seed_residents(apps["svc_residents"].state.db, apps["svc_residents"].state.protection)
    await seed_services(apps["svc_services"].state.db)
    await seed_matching(apps["svc_matching"].state.db)
    await seed_metrics(apps["svc_metrics"].state.db)


class PlatformThread:
    """The platform on an event loop of its own thread, for synchronous callers (hypothesis, schemathesis)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="platform", daemon=True)
        self.stack = AsyncExitStack()
        self.platform: Platform | None = None

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> Platform:
        self.thread.start()
        self.platform = self.run(start_platform(self.stack, self.tmp), timeout=300)
        return self.platform

    def __exit__(self, *exc) -> None:
        try:
            self.run(self.stack.aclose(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.run(self.platform.client.request(method, url, **kw))
