"""Rate limits across gateway replicas that are real processes (issue #9): two gateway uvicorn processes on one
database share their token buckets through Redis, so a user gets their burst once in total, not once per replica.

The in-process variant (tests/gateway/test_ratelimit_replicas.py) shows the same with two app instances; here
nothing is shared but the database, Redis and the network.
"""
from __future__ import annotations

import os
import uuid

import httpx
import pytest

from deploy.launcher import Child
from deploy.services import ALL
from tests.e2e.harness import Platform, free_base_port
from tests.components import needs

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REDIS_URL = os.environ.get("ONENET_TEST_REDIS_URL")
BURST = 5


@needs("redis", bool(REDIS_URL), "Redis not configured (set ONENET_TEST_REDIS_URL)")
def test_user_bucket_is_shared_by_two_gateway_processes(tmp_path):
    platform = Platform(tmp_path)
    prefix = f"onenet:rl:e2e-{uuid.uuid4().hex[:12]}:"
    # One token per 1000 s after the burst, so the test's own duration adds nothing: exactly BURST get through.
    limits = {"ONENET_REDIS_URL": REDIS_URL, "ONENET_REDIS_PREFIX": prefix,
              "ONENET_RATE_USER_BURST": str(BURST), "ONENET_RATE_USER_PER_SECOND": "0.001",
              "ONENET_REDIS_TIMEOUT_SECONDS": "10"}   # shared limits are tested, not failing open on a busy machine
    try:
        creds = platform.launcher.prepare()
        launcher = platform.launcher
        wanted = ("gateway", "svc_services")
        for spec in (s for s in ALL if s.name in wanted):
            child = Child(spec=spec, port=launcher.ports[spec.name])
            child.env = {**launcher.child_env(spec, creds), **(limits if spec.name == "gateway" else {})}
            platform.children[spec.name] = child
            launcher.children.append(child)
            launcher.spawn(child)
        gateway = platform.children["gateway"]
        replica = Child(spec=gateway.spec, port=free_base_port(), env=dict(gateway.env))
        launcher.children.append(replica)
        launcher.spawn(replica)
        for name in wanted:
            platform.wait_ready(name)
        url_b = f"http://127.0.0.1:{replica.port}"
        platform.launcher.ports["gateway-b"] = replica.port
        platform.wait_ready("gateway-b")

        headers = platform.token("resident1")  # issued by replica A, verified by both (same signing keys)
        statuses = []
        with httpx.Client(timeout=30) as client:
            for i in range(3 * BURST):
                base = platform.gw if i % 2 == 0 else url_b
                r = client.get(f"{base}/services/v1/catalogue/items?limit=1", headers=headers)
                statuses.append((base, r.status_code, r.headers.get("retry-after"),
                                 r.headers.get("content-type", "")))
        codes = [s for _, s, _, _ in statuses]
        assert codes.count(200) == BURST, statuses
        assert codes.count(429) == 2 * BURST, statuses
        limited = [s for s in statuses if s[1] == 429]
        assert all(int(retry) >= 1 and ctype.startswith("application/problem+json") for _, _, retry, ctype in limited)
        # both processes refused calls: the bucket they share is empty for each of them
        assert {base for base, status, _, _ in limited} == {platform.gw, url_b}
    finally:
        platform.stop()
        if REDIS_URL:
            import redis

            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(prefix + "*"))
            if keys:
                r.delete(*keys)
            r.close()
