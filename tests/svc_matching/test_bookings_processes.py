"""Exactly one wins with two real svc_matching processes on one PostgreSQL database (issue 30, "several
replicas"): 50 residents book the last place of a slot at once, their calls split between two uvicorn processes
that share nothing but the database. The place is taken by the slot row's conditional UPDATE under a CHECK, so the
answer cannot depend on which process a call reached. Times come from the processes' own clocks: the test books
the last slot of tomorrow, whichever day that is."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy import func, select

from common.db import Database
from svc_matching.bookings.models import Booking, BookingSlot
from svc_matching.people.places import upsert_place
from tests.conftest import TEST_ASSERTION_KEY, gateway_auth, migrate_database

N = 50
GRID = "110105001001001"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "svc_matching.app:create_app", "--factory", "--host",
                             "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
                            env=env, start_new_session=True)


async def _ready(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "svc_matching exited"
            try:
                if (await c.get(url + "/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not ready")


async def test_two_processes_one_database_exactly_one_wins(db_url, backend, jwks, make_token, tmp_path):
    if backend != "postgresql":
        pytest.skip("two processes on one database: the PostgreSQL deployment (SQLite is one process's file)")
    await migrate_database("svc_matching", db_url)
    db = Database(db_url)
    try:
        async with db.session() as s, s.begin():
            for i in range(N + 2):  # the replica rows' time of writing; nothing below depends on it
                await upsert_place(s, f"race-{i}", GRID, GRID[:12], datetime(2026, 1, 1, tzinfo=timezone.utc))
    finally:
        await db.dispose()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    env = {**os.environ, "ONENET_DATABASE_URL": db_url, "ONENET_JWKS_FILE": str(jwks_file), "ONENET_JWKS_URL": "",
           "ONENET_GATEWAY_ASSERTION_KEY": TEST_ASSERTION_KEY, "ONENET_OUTBOX_RELAY_ENABLED": "false",
           "ONENET_OFFER_SWEEPER_ENABLED": "false", "ONENET_GC_FREEZE_AT_STARTUP": "false"}
    ports = [_port(), _port()]
    procs = [_start(p, env) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc in zip(urls, procs):
            await _ready(url, proc)
        staff = {"Authorization": "Bearer " + make_token("community_staff", scopes=["community:110105001001"])}

        def resident(i: int) -> dict[str, str]:
            return {"Authorization": "Bearer " + make_token("resident", user=f"u-race-{i}",
                                                            scopes=[f"person:race-{i}"])}

        async with httpx.AsyncClient(timeout=60, auth=gateway_auth(),
                                     limits=httpx.Limits(max_connections=100)) as c:
            r = await c.post(urls[0] + "/matching/v1/bookable_resources", headers=staff, json={
                "name": "竞争测试活动室", "kind": "activity_room", "place_code": "110105001001",
                "opening_hours": {k: ["08:00-20:00"] for k in ("workday", "weekend", "holiday")},
                "slot_minutes": 60, "capacity": 2, "bookers": ["resident"], "weekly_limit": 3})
            assert r.status_code == 201, r.text
            res = r.json()
            slots = (await c.get(urls[1] + f"/matching/v1/bookable_resources/{res['id']}/slots",
                                 params={"days": 2}, headers=staff)).json()
            at = slots[-1]["starts_at"]                    # 19:00 tomorrow, in the processes' own "now"
            r = await c.post(urls[1] + "/matching/v1/bookings", headers=resident(N),
                             json={"resource_id": res["id"], "starts_at": at})
            assert r.status_code == 201, r.text            # one of two places gone: one left for N residents
            results = await asyncio.gather(*(
                c.post(urls[i % 2] + "/matching/v1/bookings", headers=resident(i),
                       json={"resource_id": res["id"], "starts_at": at}) for i in range(N)))
        codes = [r.status_code for r in results]
        assert sorted(codes) == [201] + [409] * (N - 1), codes
        for r in results:
            if r.status_code == 409:
                assert r.json()["code"] == "booking.slot_full" and "next_free_slots" in r.json()
        assert {i % 2 for i, r in enumerate(results) if r.status_code == 409} == {0, 1}  # both refused some
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    db = Database(db_url)
    try:
        async with db.session() as s:
            taken = (await s.execute(select(BookingSlot.taken))).scalar_one()
            held = (await s.execute(select(func.count()).select_from(Booking).where(Booking.state == "confirmed"))
                    ).scalar_one()
        assert taken == held == 2
    finally:
        await db.dispose()
