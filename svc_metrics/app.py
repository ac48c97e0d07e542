"""svc_metrics: event store, KPI engine with the plans' targets, early warnings and dashboard (考核评估)."""
from __future__ import annotations

import sys

from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import make_url

from common.app import create_service_app
from common.auth import TokenVerifier
from common.clock import Clock
from common.db import Database
from svc_metrics.alerts.router import cases_router, router as alerts_router
from svc_metrics.alerts.service import scan_loop
from svc_metrics.dashboard.router import router as dashboard_router
from svc_metrics.events.pipeline import WRITER_SWITCH_INTERVAL, SqliteIngest
from svc_metrics.events.router import router as events_router
from svc_metrics.gauges import gauge_loop
from svc_metrics.kpis.router import router as kpis_router
from svc_metrics.kpis.service import load_catalogue
from svc_metrics.base import OutboxEvent
from svc_metrics.surveys.router import router as surveys_router
from svc_metrics.settings import MetricsSettings


def _sqlite_read_pragmas(dbapi_connection, _record=None) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA cache_size=-262144")
    cursor.execute("PRAGMA mmap_size=2147418112")   # SQLite's default ceiling (SQLITE_MAX_MMAP_SIZE)
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def create_app(settings: MetricsSettings | None = None, *, verifier: TokenVerifier | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or MetricsSettings()
    # svc_metrics is the ingest target: its outbox carries only the survey_need. feed to svc_matching and the
    # notice. feed (survey invitations and reminders) to svc_residents, never events to itself (whatever
    # ONENET_EVENTS_URL the launcher gives every service).
    settings = settings.model_copy(update={"events_url": None})
    db = Database(settings.database_url)
    if db.dialect == "sqlite":
        # Ingest touches random index pages (event ids, entity ids) and KPI queries read the rollup and observations
        # over and over: a 256 MiB page cache and memory-mapped reads
        # instead of SQLite's 2 MiB default and a read() per page.
        event.listen(db.engine.sync_engine, "connect", _sqlite_read_pragmas)

    async def close_ingest(app: FastAPI) -> None:
        if app.state.sqlite_ingest is not None:
            await app.state.sqlite_ingest.close()

    async def catalogue(app: FastAPI) -> None:
        # The packaged catalogue is the source of truth for definitions; load it on every start.
        db = app.state.db
        async with db.session() as session, session.begin():
            await load_catalogue(session)

    app = create_service_app(
        settings=settings,
        package="svc_metrics",
        title="OneNet svc_metrics 考核评估",
        description="事件接收、指标计算（对照规划目标）、风险预警、看板与导出。"
                    "Event store, KPI engine against the plans' targets, early warnings, dashboard and exports.",
        routers=[events_router, kpis_router, alerts_router, cases_router, dashboard_router, surveys_router],
        outbox_model=OutboxEvent,
        feeds=("survey_need.", "notice."),
        verifier=verifier,
        db=db,
        on_startup=[catalogue],
        on_shutdown=[close_ingest],
        background=[gauge_loop, scan_loop],
        extra_media_types={"/metrics/v1/dashboard/session": ("application/x-www-form-urlencoded",)},
        clock=clock,
    )
    # SQLite has one writer: batches go through a prepare/write pipeline (events/pipeline.py); PostgreSQL
    # ingests each batch in one transaction with advisory locks per entity (several replicas may write).
    # (An in-memory database cannot be opened a second time by the pipeline's writer: one transaction per batch.)
    file_backed = db.dialect == "sqlite" and make_url(db.url).database not in (None, "", ":memory:")
    app.state.sqlite_ingest = SqliteIngest(db, pragmas=_sqlite_read_pragmas) if file_backed else None
    if file_backed:
        # The writer thread needs the GIL back between the statements of a batch's transaction; with the
        # default 5 ms switch interval it waits that long each time the event loop is busy preparing the next
        # batch (measured: the writer idle ~10 % of an ingest run). Process-wide, hence set here.
        sys.setswitchinterval(WRITER_SWITCH_INTERVAL)
    return app
