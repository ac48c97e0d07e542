"""Two svc_residents processes (uvicorn) on one PostgreSQL database and one Redis: an app holding the live stream
open on either replica gets, on that one connection, the messages written through the other, and the replica lets
go of the connection's subscription when the app leaves. The database poll is set to a minute, so
only Redis' wake-up can bring a message within the test's few seconds (nothing lives in process memory but who is
connected where)."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.components import needs
from tests.conftest import METRICS_AUTH, POSTGRES_URL, REDIS_URL, TEST_ASSERTION_KEY, gateway_auth
from tests.e2e.harness import free_base_port
from tests.svc_residents.conftest import ROLES, P

pytestmark = [needs("postgres", bool(POSTGRES_URL), "PostgreSQL not configured (set ONENET_TEST_POSTGRES_URL)"),
              needs("redis", bool(REDIS_URL), "Redis not configured (set ONENET_TEST_REDIS_URL)")]


@pytest.fixture
async def replicas(tmp_path, jwks):
    from common.db import Database
    from svc_residents import protection
    from svc_residents.seed import seed_demo
    from tests.conftest import _create_pg_database, migrate_database

    url, drop = await _create_pg_database(POSTGRES_URL)
    await migrate_database("svc_residents", url)
    keys = tmp_path / "fields.json"
    db = Database(url)
    await seed_demo(db, protection.load(keys))
    await db.dispose()
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    base = free_base_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ONENET_")},
           "ONENET_DATABASE_URL": url, "ONENET_FIELD_KEYS_FILE": str(keys), "ONENET_JWKS_FILE": str(tmp_path / "jwks.json"),
           "ONENET_GATEWAY_ASSERTION_KEY": TEST_ASSERTION_KEY, "ONENET_REDIS_URL": REDIS_URL,
           "ONENET_NOTIFY_STREAM_POLL_SECONDS": "60", "ONENET_NOTIFY_DISPATCH_ENABLED": "false",
           "ONENET_OUTBOX_RELAY_ENABLED": "false", "ONENET_CALLOUT_SCAN_ENABLED": "false", "ONENET_LOG_LEVEL": "WARNING",
           "ONENET_METRICS_TOKEN": os.environ["ONENET_METRICS_TOKEN"]}
    procs = [subprocess.Popen([sys.executable, "-m", "uvicorn", "svc_residents.app:create_app", "--factory",
                               "--host", "127.0.0.1", "--port", str(base + i), "--log-level", "warning"], env=env)
             for i in range(2)]
    try:
        urls = [f"http://127.0.0.1:{base + i}" for i in range(2)]
        deadline = time.monotonic() + 60
        for u in urls:
            while True:
                try:
                    if httpx.get(f"{u}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "replica not ready"
                await asyncio.sleep(0.2)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
        await drop()


async def _streams(c: httpx.AsyncClient, url: str) -> float:
    r = await c.get(f"{url}/metrics", headers=METRICS_AUTH)
    return next(float(line.split()[-1]) for line in r.text.splitlines() if line.startswith("onenet_notification_streams "))


async def _event(lines, timeout: float = 10.0) -> dict:
    fields: dict = {}
    while True:
        line = await asyncio.wait_for(anext(lines), timeout)
        if not line and "data" in fields:
            return fields
        name, _, value = line.partition(": ")
        if name in ("id", "data"):
            fields[name] = value


async def test_a_held_stream_on_either_replica_gets_what_the_other_wrote(replicas, auth):
    staff = auth(**ROLES["staff1"])
    async with httpx.AsyncClient(auth=gateway_auth(), timeout=20) as c:
        async def write(replica: int, n: int) -> dict:
            r = await c.post(f"{replicas[replica]}/residents/v1/notifications", json={
                "recipient": f"person:{P('P3')}", "template": "verification.needs_resident",
                "variables": {"field": f"户籍{n}"}}, headers={**staff, "Idempotency-Key": f"replica-{n}"})
            assert r.status_code == 201, r.text
            return r.json()

        for listen, other in ((0, 1), (1, 0)):
            who = auth(**ROLES["resident3" if listen == 0 else "proxy1"])  # P3, and the proxy acting for P3
            async with c.stream("GET", f"{replicas[listen]}/residents/v1/notifications/stream",
                                headers={**who, "Accept": "text/event-stream"}) as r:
                assert r.status_code == 200
                lines = r.aiter_lines()
                assert (await anext(lines)).startswith("retry: ")
                while await _streams(c, replicas[listen]) < 1:  # connected and waiting
                    await asyncio.sleep(0.05)
                # several messages on the one connection, each written through the other replica (or this one)
                for k, writer in enumerate((other, listen, other)):
                    t0 = time.monotonic()
                    note = await write(writer, 10 * listen + k)
                    got = await _event(lines)
                    assert got["id"] == note["id"] and f"户籍{10 * listen + k}" in got["data"]
                    assert time.monotonic() - t0 < 10  # through Redis, not by the minute-long database poll
            deadline = time.monotonic() + 10
            while await _streams(c, replicas[listen]) > 0:  # the client left: the replica let go of it
                assert time.monotonic() < deadline, "the subscription was not released"
                await asyncio.sleep(0.05)
