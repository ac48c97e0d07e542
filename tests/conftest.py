"""Shared fixtures: signing keys and tokens, a fresh database per test on SQLite and (when configured)
PostgreSQL, and in-process service clients with migrations applied and the lifespan running."""
from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import import_module
from typing import Any

import httpx
import jwt
import pytest

from common import acting
from common.assertion import AssertionAuth, GatewayAssertion
from common.auth import TokenVerifier
from common.keys import SigningKey, jwks_document
from common.clock import Clock
from tests.components import check_marks, missing, required
from hypothesis import HealthCheck, settings as hypothesis_settings

# Property tests on a shared 2-core machine: a slow draw is the machine's load, not the strategy's fault (a failed
# "too slow" health check failed a full run once); each test still sets its own examples and deadline.
hypothesis_settings.register_profile("onenet", suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("onenet")

# Hundreds of apps start in one test process: a full collection at each start-up would cost the suite about a
# minute, and what is frozen would pile up. The processes tests start (e2e) freeze, as deployed.
os.environ.setdefault("ONENET_GC_FREEZE_AT_STARTUP", "false")
# in-process gateways write their message log on their own loop; tests/e2e turn the writer process back on
os.environ.setdefault("ONENET_AUDIT_WRITER_PROCESS", "false")
# log lines written as they come, so each test's captured output holds its own lines
os.environ.setdefault("ONENET_LOG_FLUSH_SECONDS", "0")
# every app the tests build serves /metrics to this bearer token (the scraper's); the e2e platforms make their own
os.environ.setdefault("ONENET_METRICS_TOKEN", "metrics-token-for-the-tests")
METRICS_AUTH = {"Authorization": f"Bearer {os.environ['ONENET_METRICS_TOKEN']}"}
# the gateway's assertion key of every in-process gateway, service and emulator (ADR 0013); the processes the
# e2e tests start get keys of their own from the launcher
TEST_ASSERTION_KEY = "test-only-gateway-assertion-key"
os.environ.setdefault("ONENET_GATEWAY_ASSERTION_KEY", TEST_ASSERTION_KEY)
POSTGRES_URL = os.environ.get("ONENET_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("ONENET_TEST_REDIS_URL")



def pytest_configure(config) -> None:
    required()  # an unknown name in ONENET_REQUIRE stops the run before it starts


def pytest_runtest_setup(item) -> None:
    check_marks(item)


_SHARED_SCOPES = {"class", "module", "package"}


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups off the marks
def pytest_collection_modifyitems(config, items) -> None:
    """For `--dist loadgroup` (`make test PYTEST_ARGS="-n 2 --dist loadgroup"`): a test that shares a module's
    fixture (a platform, a seeded app, a module's event loop) stays on the worker of its module's other tests, so that
    fixture starts once; every other test goes to whichever worker is free, so one long file no longer holds a worker
    while the other idles. Under `--dist loadfile` the marks change nothing."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if any(defs and defs[-1].scope in _SHARED_SCOPES for defs in info.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


ISSUER = "onenet-gateway"
AUDIENCE = "onenet"


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashes():
    """argon2id at its lowest cost in every in-process gateway: the tests sign people in, seed demo users and make
    accounts by the hundred, and what they check is who may and what is counted, not the hash's cost (800 hash
    operations at the production parameters, gateway/identity/tokens.py, cost the suite over a minute). The
    processes tests/e2e starts hash at the production parameters."""
    from argon2 import PasswordHasher

    from gateway.identity import tokens

    saved = tokens._hasher, tokens._DUMMY_HASH
    tokens._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    tokens._DUMMY_HASH = tokens._hasher.hash("onenet-dummy-secret")
    yield
    tokens._hasher, tokens._DUMMY_HASH = saved


@pytest.fixture(scope="session", autouse=True)
def _one_default_tls_context():
    """One default TLS context for every httpx client the tests make: each client with a network transport loads
    the CA bundle into a context of its own (25 ms of CPU), and every in-process app makes about ten (its service
    and department clients). A client given its own `verify` or `cert` (mTLS) still gets a context of its own."""
    from httpx._transports import default

    made = default.create_ssl_context
    shared: dict[bool, Any] = {}

    def create_ssl_context(verify=True, cert=None, trust_env=True):
        if verify is not True or cert is not None:
            return made(verify=verify, cert=cert, trust_env=trust_env)
        if trust_env not in shared:
            shared[trust_env] = made(verify=True, cert=None, trust_env=trust_env)
        return shared[trust_env]

    default.create_ssl_context = create_ssl_context
    yield
    default.create_ssl_context = made


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="session")
def jwks(signing_key) -> dict:
    return jwks_document([signing_key])


@pytest.fixture(scope="session")
def make_token(signing_key) -> Callable[..., str]:
    def _make(role: str = "ops", *, user: str = "u-test", member: str = "app-test", scopes=(),
              acting_for: str | None = None, ttl: int = 300, key: SigningKey | None = None, **extra: Any) -> str:
        now = int(Clock().timestamp())  # tokens live on real time (common/clock.py)
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": user, "member": member, "role": role,
                  "scopes": list(scopes), "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex, **extra}
        if acting_for:
            claims["acting_for"] = acting_for
            # the gateway writes what the authorisation allows beside it; the demo record allows every act
            claims.setdefault("acting_actions", sorted(acting.GROUPS))
        k = key or signing_key
        return jwt.encode(claims, k.private_key, algorithm="RS256", headers={"kid": k.kid})

    return _make


@pytest.fixture
def auth(make_token) -> Callable[..., dict[str, str]]:
    def _auth(role: str = "ops", **kw) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(role, **kw)}"}

    return _auth


async def _create_pg_database(base_url: str) -> tuple[str, Callable[[], Any]]:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"onenet_t_{uuid.uuid4().hex[:12]}"
    u = make_url(base_url)
    admin_dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    try:
        # template0: nothing to copy but the system catalogues (template1 is larger, and the slower to copy)
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(admin_dsn)
        try:
            await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await c.close()

    return u.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False), drop


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@asynccontextmanager
async def fresh_database(backend: str, tmp_path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file in `tmp_path`, or a new PostgreSQL database when configured."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/test.db"
        return
    if not POSTGRES_URL:
        missing("postgres", "PostgreSQL not configured (set ONENET_TEST_POSTGRES_URL)")
    url, drop = await _create_pg_database(POSTGRES_URL)
    try:
        yield url
    finally:
        await drop()


@pytest.fixture(params=BACKENDS)
async def db_url(request, tmp_path) -> AsyncIterator[str]:
    """A fresh, empty database per test (a module's shared one: `fresh_database` in a module fixture)."""
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def backend(db_url) -> str:
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"


_TEMPLATE_DIR: str | None = None
_PG_TEMPLATES: dict[str, str] = {}


async def migrate_database(package: str, db_url: str) -> None:
    """Bring a fresh test database to head by copying a template migrated once per session.

    Running every migration for every test is the slowest part of the suite; a SQLite file copy or a
    PostgreSQL `CREATE DATABASE … TEMPLATE …` gives the same schema in a fraction of the time.
    """
    from common.migrations import upgrade

    await copy_template(package, db_url, lambda url: asyncio.to_thread(upgrade, package, url))


async def copy_template(key: str, db_url: str, build: Callable[[str], Any]) -> None:
    """Make the database at `db_url` a copy of the template `key`, which `await build(template_url)` makes once
    per session and backend (a migrated schema; a migrated and seeded one, tests/svc_residents/conftest.py)."""
    import shutil
    import sqlite3
    import tempfile

    from sqlalchemy.engine import make_url

    global _TEMPLATE_DIR
    u = make_url(db_url)
    if u.get_backend_name() == "sqlite":
        if _TEMPLATE_DIR is None:
            _TEMPLATE_DIR = tempfile.mkdtemp(prefix="onenet-tpl-")
        tpl = f"{_TEMPLATE_DIR}/{key}.db"
        if not os.path.exists(tpl):
            try:
                await build(u.set(database=tpl).render_as_string(hide_password=False))
            except BaseException:  # no half-built template for the next test to copy
                for leftover in (tpl, f"{tpl}-wal", f"{tpl}-shm"):
                    if os.path.exists(leftover):
                        os.remove(leftover)
                raise
            with sqlite3.connect(tpl) as conn:  # fold the WAL into the file before copying it
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(tpl, u.database)
        return
    import asyncpg

    admin_dsn = u.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    if key not in _PG_TEMPLATES:
        name = f"onenet_tpl_{key}_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        try:
            await build(u.set(database=name).render_as_string(hide_password=False))
        except BaseException:  # no half-built template left behind
            conn = await asyncpg.connect(admin_dsn)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
            raise
        _PG_TEMPLATES[key] = name
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{u.database}" TEMPLATE "{_PG_TEMPLATES[key]}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_templates():
    yield
    if not _PG_TEMPLATES or not POSTGRES_URL:
        return
    import asyncpg
    from sqlalchemy.engine import make_url

    async def drop() -> None:
        dsn = make_url(POSTGRES_URL).set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            for name in _PG_TEMPLATES.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


async def start_service(stack: AsyncExitStack, package: str, db_url: str, jwks: dict, *, migrated: bool = False,
                        **settings_overrides: Any) -> httpx.AsyncClient:
    """Migrate a fresh database (unless `migrated`: a copied template at head), build the app, run its lifespan,
    and hand back an in-process client.

    The client signs each request as the gateway would (`X-OneNet-Assertion`, ADR 0013), so every test goes
    through the service's real check; `unsigned_client(app)` calls it as from around the gateway."""
    if not migrated:
        await migrate_database(package, db_url)
    app_mod = import_module(f"{package}.app")
    settings_mod = import_module(f"{package}.settings")
    settings_cls = next(v for k, v in vars(settings_mod).items() if k.endswith("Settings") and
                        getattr(v, "__module__", "") == settings_mod.__name__)
    overrides = {"outbox_relay_enabled": False, "jwks_url": None, **settings_overrides}
    if "field_keys_file" in settings_cls.model_fields and "field_keys_file" not in overrides:
        # never the developer's var/: each test app gets keys of its own
        import tempfile
        from pathlib import Path

        overrides["field_keys_file"] = Path(tempfile.mkdtemp(prefix="onenet-keys-")) / "fields.json"
    settings = settings_cls(database_url=db_url, **overrides)
    app = app_mod.create_app(settings, verifier=TokenVerifier(settings, jwks=jwks))
    await stack.enter_async_context(app.router.lifespan_context(app))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                               auth=gateway_auth(settings.gateway_assertion_key))
    await stack.enter_async_context(client)
    client.app = app  # type: ignore[attr-defined]
    return client


def gateway_auth(key: str | None = None, clock=None) -> AssertionAuth:
    """httpx auth adding the gateway's assertion to each request (the test key unless told)."""
    return AssertionAuth(GatewayAssertion(key or TEST_ASSERTION_KEY, clock=clock))


def unsigned_client(app) -> httpx.AsyncClient:
    """An in-process client without the gateway's assertion: a call straight at the service."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def service_client(db_url, jwks) -> AsyncIterator[Callable[..., Any]]:
    """`await service_client("svc_residents")` → an httpx client on a freshly migrated app."""
    async with AsyncExitStack() as stack:
        async def _start(package: str, *, migrated: bool = False, **overrides: Any) -> httpx.AsyncClient:
            return await start_service(stack, package, db_url, jwks, migrated=migrated, **overrides)

        yield _start
