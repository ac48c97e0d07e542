"""Fixtures for svc_metrics: a client on a frozen clock, event builders, and a poster for batches."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from common.clock import FrozenClock

C1, C2 = "110105001001", "110105001002"
G1, G2, G3 = C1 + "001", C1 + "002", C2 + "001"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)   # 09:00 Monday 2 March 2026 in Shanghai
NOW = datetime(2026, 4, 15, 4, 0, tzinfo=timezone.utc)

_ids = itertools.count(1)


def ev(type_: str, at: datetime, subject: str | None = None, *, grid: str | None = G1,
       community: str | None = None, **data) -> dict:
    community = community if community is not None else (grid[:12] if grid else None)
    return {"event_id": f"e-{next(_ids):06d}", "type": type_, "occurred_at": at.isoformat(), "source": "test",
            "community": community, "grid": grid, "subject": subject, "data": data}


def request_flow(rid: str, at: datetime, *, steps: dict[str, timedelta] | None = None, grid: str = G1,
                 category: str = "life_service", channel: str = "app", priority: str = "normal",
                 due: timedelta | None = None, rating: int | None = None, **extra) -> list[dict]:
    """request.submitted plus one event per named step at submission + delta."""
    common = {"category": category, "channel": channel, "priority": priority, **extra}
    if due is not None:
        common["resolution_due_at"] = (at + due).isoformat()
    out = [ev("request.submitted", at, rid, grid=grid, **common)]
    for step, delta in (steps or {}).items():
        data = dict(common)
        if step == "rated":
            data["rating"] = rating
        out.append(ev(f"request.{step}", at + delta, rid, grid=grid, **data))
    return out


@pytest.fixture
async def client(service_client):
    c = await service_client("svc_metrics")
    c.app.state.clock = FrozenClock(NOW)
    return c


@pytest.fixture
def ops(auth):
    return auth(role="ops", user="ops1")


@pytest.fixture
def post(client, auth):
    headers = auth(role="system", user="svc_services", member="svc_services")

    async def _post(events: list[dict], expect: int = 200):
        r = await client.post("/metrics/v1/events", json={"events": events}, headers=headers)
        assert r.status_code == expect, r.text
        return r.json()

    return _post


@pytest.fixture
def kpi(client, ops):
    async def _kpi(code: str, period: str = "2026-03", scope: str = "all", **params):
        r = await client.get(f"/metrics/v1/kpis/{code}", params={"period": period, "scope": scope, **params},
                             headers=ops)
        assert r.status_code == 200, r.text
        return r.json()

    return _kpi
