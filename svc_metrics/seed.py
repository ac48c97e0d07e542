"""Demo data for svc_metrics: the KPI catalogue only (every number comes from ingested events); idempotent."""
from __future__ import annotations

from common.db import Database
from svc_metrics.kpis.service import load_catalogue


async def seed_demo(db: Database) -> None:
    async with db.session() as session, session.begin():
        await load_catalogue(session)
