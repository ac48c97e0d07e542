"""Platform-level Prometheus gauges served on svc_metrics' /metrics: open backlog, open overdue, and per
source how old the freshest event of the last batch was on arrival (a lower bound on that service's outbox lag)."""
from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import FastAPI
from prometheus_client import Gauge
from sqlalchemy import and_, func, select

from common.periodic import run_periodically
from svc_metrics.kpis.queries import stock_conds
from svc_metrics.kpis.models import Observation


BACKLOG = Gauge("onenet_platform_open_requests", "Requests received and not yet resolved (all communities)")
OVERDUE = Gauge("onenet_platform_overdue_requests", "Requests open past their resolution deadline")
INGEST_LAG = Gauge("onenet_platform_event_arrival_lag_seconds",
                   "Age on arrival of the freshest event in the last batch from each source", ["source"])


def record_arrival(events, now: datetime) -> None:
    freshest: dict[str, datetime] = {}
    for env, _kind, _id in events:
        src = env.source or "unknown"
        if src not in freshest or env.occurred_at > freshest[src]:
            freshest[src] = env.occurred_at
    for src, t in freshest.items():
        INGEST_LAG.labels(src).set(max(0.0, (now - t).total_seconds()))


async def refresh(app: FastAPI) -> tuple[int, int]:
    now = app.state.clock.now()
    async with app.state.db.session() as session:
        backlog = (await session.execute(select(func.count()).where(
            Observation.kpi == "resolution", Observation.num == 0))).scalar_one()
        overdue = (await session.execute(select(func.count()).where(
            and_(Observation.kpi == "on_time", *stock_conds(now))))).scalar_one()
    BACKLOG.set(backlog)
    OVERDUE.set(overdue)
    return backlog, overdue


async def gauge_loop(app: FastAPI, stop: asyncio.Event) -> None:
    """Background job: refresh the backlog gauges every `gauge_refresh_seconds` (0 turns it off)."""
    await run_periodically("svc_metrics/gauges", lambda: refresh(app), stop,
                           interval=app.state.settings.gauge_refresh_seconds)
