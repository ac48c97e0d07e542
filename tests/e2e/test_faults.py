"""Faults with real processes on loopback: svc_metrics away under traffic, a service SIGKILLed mid-write,
svc_matching down during dispatch. `make soak` runs the same with a full minute of downtime."""
from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from tests.e2e.harness import Platform

pytestmark = pytest.mark.e2e

DOWNTIME = float(os.environ.get("ONENET_FAULT_DOWNTIME", "8"))


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("faults")).start()
    try:
        yield p
    finally:
        p.stop()


async def _submit(client: httpx.AsyncClient, headers: dict[str, str], n: int, tag: str) -> list[str]:
    async def one(i: int) -> str | None:
        r = await client.post("/services/v1/requests", headers={**headers, "Idempotency-Key": f"{tag}-{i}"},
                              json={"item_code": "WG-SJ-001", "channel": "grid_patrol",
                                    "description": f"{tag} 路灯不亮 #{i}", "attributes": {"event_type": "facility"},
                                    "location": {"grid": "110105001001001"}})
        return r.json()["id"] if r.status_code == 201 else None

    ids = await asyncio.gather(*(one(i) for i in range(n)))
    return [i for i in ids if i]


def _wait_delivered(platform: Platform, ids: list[str], timeout: float) -> dict[str, int]:
    """Count, per request id, the request.submitted events svc_metrics stored."""
    marks = ",".join("?" * len(ids))
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        rows = platform.sql("svc_metrics", f"SELECT subject, count(*) FROM events WHERE type='request.submitted' "
                                           f"AND subject IN ({marks}) GROUP BY subject", *ids)
        counts = dict(rows)
        if len(counts) == len(ids):
            return counts
        time.sleep(0.5)
    return counts


def test_metrics_down_under_traffic_every_event_arrives_once(platform):
    grid = platform.token("grid1")
    platform.kill("svc_metrics", signal.SIGTERM)
    started = time.monotonic()

    async def traffic() -> list[str]:
        ids: list[str] = []
        async with httpx.AsyncClient(base_url=platform.gw, timeout=30) as client:
            while time.monotonic() - started < DOWNTIME:
                ids += await _submit(client, grid, 5, f"down-{len(ids)}")
        return ids

    ids = asyncio.run(traffic())
    assert len(ids) >= 5, "no traffic got through while svc_metrics was away"
    # the requests themselves were never affected; their events are waiting in svc_services' outbox
    pending = platform.sql("svc_services", "SELECT count(*) FROM outbox WHERE delivered_at IS NULL")[0][0]
    assert pending >= len(ids)
    platform.restart("svc_metrics")
    counts = _wait_delivered(platform, ids, timeout=DOWNTIME + 90)
    assert len(counts) == len(ids), f"{len(ids) - len(counts)} events never arrived"
    assert set(counts.values()) == {1}, "an event was counted twice"


def test_sigkill_mid_writes_leaves_no_partial_record_and_outbox_resumes(platform):
    grid = platform.token("grid1")

    async def burst() -> None:
        async with httpx.AsyncClient(base_url=platform.gw, timeout=30) as client:
            async def loop(worker: int) -> None:
                for i in range(200):
                    try:
                        await _submit(client, grid, 1, f"kill-{worker}-{i}")
                    except httpx.HTTPError:
                        return

            tasks = [asyncio.create_task(loop(w)) for w in range(8)]
            await asyncio.sleep(1.5)
            platform.kill("svc_services", signal.SIGKILL)
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(burst())
    platform.restart("svc_services")
    # every request has exactly its first timeline entry and its submitted event: nothing half-written
    orphans = platform.sql("svc_services", """
        SELECT r.id FROM service_requests r
        LEFT JOIN request_timeline t ON t.request_id = r.id AND t.seq = 1
        WHERE r.description LIKE 'kill-%' AND t.id IS NULL""")
    assert orphans == []
    missing_events = platform.sql("svc_services", """
        SELECT r.id FROM service_requests r
        WHERE r.description LIKE 'kill-%'
          AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.subject = r.id AND o.type = 'request.submitted')""")
    assert missing_events == []
    ids = [r[0] for r in platform.sql("svc_services",
                                      "SELECT id FROM service_requests WHERE description LIKE 'kill-%'")]
    assert ids, "no request was written before the kill"
    counts = _wait_delivered(platform, ids, timeout=90)
    assert len(counts) == len(ids) and set(counts.values()) == {1}


def test_matching_down_manual_dispatch_still_works(platform):
    staff, grid = platform.token("staff1"), platform.token("grid1")

    async def flow() -> None:
        async with httpx.AsyncClient(base_url=platform.gw, timeout=30) as client:
            [rid] = await _submit(client, grid, 1, "manual")
            platform.kill("svc_matching", signal.SIGKILL)
            try:
                r = await client.get("/matching/v1/hsds/services", headers=staff)
                assert r.status_code == 503 and r.json()["code"] == "upstream_unavailable"
                r = await client.post(f"/services/v1/requests/{rid}/transitions", headers=staff,
                                      json={"action": "accept", "version": 1})
                assert r.status_code == 200, r.text
                r = await client.post(f"/services/v1/requests/{rid}/transitions", headers=staff,
                                      json={"action": "dispatch", "version": 2,
                                            "assignee": {"kind": "grid_worker", "id": "grid1"}})
                assert r.status_code == 200, r.text
                assert r.json()["state"] == "dispatched"
            finally:
                platform.restart("svc_matching")

    asyncio.run(flow())
