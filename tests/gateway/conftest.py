"""Gateway fixtures: a gateway on a fresh database (a copy of a template migrated once per session,
tests/conftest.py's migrate_database) in front of the in-process department emulators, with tokens minted directly (no password hashing)."""
from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from types import SimpleNamespace

import httpx
import pytest

from common.auth import TokenVerifier
from common.clock import FrozenClock
from common.keys import load_signing_keys
from common.migrations import upgrade
from tests.conftest import migrate_database

START = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)  # a Friday, 10:00 in Shanghai

MEMBERS = [
    ("dept-gongan", "区公安分局", "department", "dept_staff", ["dept:gongan"]),
    ("dept-minzheng", "区民政局", "department", "dept_staff", ["dept:minzheng"]),
    ("dept-renshe", "区人社局", "department", "dept_staff", ["dept:renshe"]),
    ("community-xf", "幸福社区", "community", "community_staff", ["community:110105001001"]),
    ("community-ak", "安康社区", "community", "community_staff", ["community:110105001002"]),
    ("ops-console", "运维台", "app", "ops", []),
]


async def serve_in_process(app, *, lifespan: str = "on", **config):
    """`app` under a real uvicorn server on a free loopback port, in this event loop: (server, its task, port).
    Stop it with `server.should_exit = True; await task`. With lifespan "off" (an app whose lifespan already
    runs), the server's lifespan state is `server.lifespan.state`."""
    import contextlib

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan,
                                           timeout_graceful_shutdown=5, **config))
    server.capture_signals = contextlib.nullcontext  # the test runner keeps its own signal handlers
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "the server did not start"
    return server, serving, server.servers[0].sockets[0].getsockname()[1]


async def fresh_gateway_db_and_emulators(db_url: str, sqlite_template, gateway_keys_dir):
    """The gateway's database at head (a copy of the template migrated once per session) and the department
    emulators trusting the gateway's keys, for tests that serve them over real sockets."""
    from common.auth import TokenVerifier
    from common.keys import jwks_document
    from gateway.departments.app import EmulatorSettings, create_app as create_emulators

    await migrate_database("gateway", db_url)
    emu_settings = EmulatorSettings(jwks_url=None)
    return create_emulators(emu_settings, verifier=TokenVerifier(
        emu_settings, jwks=jwks_document(load_signing_keys(gateway_keys_dir))))


@pytest.fixture(scope="session")
def gateway_keys_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gw-keys")
    load_signing_keys(d)  # generates the key once for the session
    return d


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("gw-template") / "gateway.db"
    upgrade("gateway", f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def residents_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("res-template") / "res.db"
    upgrade("svc_residents", f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def exchange(db_url, tmp_path, gateway_keys_dir, sqlite_template, request):
    from gateway.app import create_app
    from gateway.departments.app import EmulatorSettings, create_app as create_emulators
    from gateway.settings import GatewaySettings

    await migrate_database("gateway", db_url)
    extra = dict(getattr(request, "param", None) or {})
    settings = GatewaySettings(database_url=db_url, keys_dir=gateway_keys_dir, outbox_relay_enabled=False,
                               breaker_failures=2, breaker_reset_seconds=60, upstream_retries=0,
                               upstream_timeout_seconds=extra.pop("timeout", 10.0),
                               catalogue_from_openapi=extra.pop("catalogue_from_openapi", False), **extra)
    clock = FrozenClock(START)
    async with AsyncExitStack() as stack:
        issuer_jwks = {"keys": []}
        emu_settings = EmulatorSettings(jwks_url=None)
        gw_holder: dict = {}

        # the emulators trust the gateway's keys (read once the gateway exists)
        class _Verifier(TokenVerifier):
            async def verify(self, token):
                if not self._keys:
                    self._load(gw_holder["app"].state.token_issuer.jwks())
                return await super().verify(token)

        emulators = create_emulators(emu_settings, verifier=_Verifier(emu_settings, jwks=issuer_jwks))
        await stack.enter_async_context(emulators.router.lifespan_context(emulators))
        gw = create_app(settings, transports={"departments": httpx.ASGITransport(app=emulators)}, clock=clock)
        gw_holder["app"] = gw
        await _seed(gw)
        await stack.enter_async_context(gw.router.lifespan_context(gw))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://gw"))

        def headers(member: str, *, user: str | None = None, role: str | None = None, **extra_headers) -> dict:
            m = next(m for m in MEMBERS if m[0] == member) if any(m[0] == member for m in MEMBERS) else None
            tok = gw.state.token_issuer.issue(subject=user or member, member=member,
                                              role=role or (m[3] if m else "system"),
                                              scopes=list(m[4]) if m else [])["access_token"]
            return {"Authorization": f"Bearer {tok}", **extra_headers}

        yield SimpleNamespace(client=client, app=gw, clock=clock, h=headers, emulators=emulators, db_url=db_url)


def member_headers(gw, member: str, **headers) -> dict:
    """Authorization for one of MEMBERS, signed by the gateway `gw` itself (as its token endpoint would)."""
    m = next(m for m in MEMBERS if m[0] == member)
    tok = gw.state.token_issuer.issue(subject=member, member=member, role=m[3], scopes=m[4])["access_token"]
    return {"Authorization": f"Bearer {tok}", **headers}


async def _seed(app) -> None:
    from gateway.members.models import Member

    now = START
    async with app.state.db.session() as s, s.begin():
        for code, name, kind, role, scopes in MEMBERS:
            s.add(Member(code=code, name=name, kind=kind, role=role, scopes=scopes, secret_hash=None,
                         status="active", created_at=now))


class EdgeOrNot:
    """The gateway served alone (`mode` "gateway") or behind its edge (real nginx+Lua, `mode` "edge", SQLite only:
    the edge is the same on both backends). Give the gateway `settings_extra`; once it is served on `port`,
    `await front(settings, gw, port)` starts the edge in front of it and gives the port to call; `await stop()`
    before the gateway's servers stop (the edge's error.log printed for a failure's report)."""

    def __init__(self, mode: str, db_url: str, tmp_path) -> None:
        from gateway.edge import config as edge_config
        from tests.components import missing
        from tests.s3server import free_port

        self.mode, self.tmp_path, self.edge = mode, tmp_path, None
        self.settings_extra: dict = {}
        if mode != "edge":
            return
        self.runtime = edge_config.find_runtime()
        if isinstance(self.runtime, str):
            missing("edge", self.runtime)
        if db_url.startswith("postgresql"):
            pytest.skip("the edge is the same on both backends: run on SQLite")
        import secrets

        self.secret = secrets.token_urlsafe(24)
        self.edge_port, self.control_port = free_port(), free_port()
        self.settings_extra = {"edge_secret": self.secret,
                               "edge_control_url": f"http://127.0.0.1:{self.control_port}/_edge/state"}

    async def front(self, settings, gw, port: int) -> int:
        if self.mode != "edge":
            return port
        from gateway.edge import config as edge_config

        self.edge = edge_config.EdgeProcess(settings, listen=f"127.0.0.1:{self.edge_port}",
                                            control_port=self.control_port, gateway=f"http://127.0.0.1:{port}",
                                            secret=self.secret, prefix=self.tmp_path / "edge", runtime=self.runtime)
        self.edge.start()
        await asyncio.to_thread(self.edge.wait_ready)
        await gw.state.edge.changed()
        return self.edge_port

    async def stop(self) -> None:
        edge, self.edge = self.edge, None
        if edge is not None:
            await asyncio.to_thread(edge.stop)
            print("---- the edge's error.log ----\n" + edge.error_log())


@pytest.fixture(params=["gateway", "edge"])
async def edge_or_not(request, db_url, tmp_path):
    """Each test twice: the gateway alone and behind its edge (EdgeOrNot); the edge stopped at the latest here."""
    front = EdgeOrNot(request.param, db_url, tmp_path)
    try:
        yield front
    finally:
        await front.stop()
