"""svc_services: the service catalogue (事项清单) and requests / work orders (诉求 / 工单) with SLA timers."""
from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from starlette.middleware import Middleware

from common.app import create_service_app
from common.auth import TokenVerifier
from common.clock import Clock
from common.direct_routes import DirectRoutes
from common.crypto import FieldProtection
from common.periodic import run_periodically
from common.storage import store_from_settings
from svc_services.alarms.router import router as alarms_router
from svc_services.appointments.router import router as appointments_router
from svc_services.attachments.reading import ACCESS_FEED
from svc_services.attachments.router import router as attachments_router
from svc_services.base import OutboxEvent
from svc_services.catalogue.router import router as catalogue_router
from svc_services.clients import close_clients, install_clients
from svc_services.deliberation.router import router as deliberation_router
from svc_services.deliberation.votes_router import router as votes_router
from svc_services.disclosure.router import router as notices_router
from svc_services.dispatch.router import router as dispatch_router
from svc_services.emergency.feed import FEED as EMERGENCY_FEED
from svc_services.emergency.router import router as emergency_router
from svc_services.grids.router import router as grids_router
from svc_services.notices.feed import FEED as NOTICE_FEED
from svc_services.materials.router import router as materials_router
from svc_services.open311.fallback import install_routing_errors
from svc_services.open311.publication import router as publication_router
from svc_services.open311.router import router as open311_router
from svc_services.requests.group_commit import IntakeWriter
from svc_services.requesters.router import router as requesters_router
from svc_services.requests.router import SUBMIT_DIRECT
from svc_services.requests.router import router as requests_router
from svc_services.settings import ServicesSettings

log = logging.getLogger("onenet.svc_services")


async def sla_scheduler(app: FastAPI, stop: asyncio.Event) -> None:
    """Runs run_sla_scan every interval until the app stops (first run after one interval)."""
    from svc_services.sla.scan import run_sla_scan

    settings: ServicesSettings = app.state.settings
    if not settings.sla_scan_enabled:
        return
    await run_periodically("svc_services/sla", lambda: run_sla_scan(app.state.db, app.state.clock, settings), stop,
                           interval=settings.sla_scan_interval_seconds, run_first=False)


async def deliberation_scan(app: FastAPI, stop: asyncio.Event) -> None:
    """Counts each vote at its closing time, and warns once of each resolution task past its deadline (an event;
    svc_metrics raises the warning)."""
    from svc_services.deliberation.resolutions import warn_overdue
    from svc_services.deliberation.votes import close_due

    settings: ServicesSettings = app.state.settings
    if not settings.sla_scan_enabled:
        return

    async def scan() -> int:
        now = app.state.clock.now()
        return await close_due(app.state.db, now) + await warn_overdue(app.state.db, now)

    await run_periodically("svc_services/deliberation", scan, stop, interval=settings.sla_scan_interval_seconds,
                           run_first=False)


async def close_intake(app: FastAPI) -> None:
    await app.state.intake.close()


async def storage_purge(app: FastAPI, stop: asyncio.Event) -> None:
    """Deletes photos and material files past their retention (svc_services.attachments.retention)."""
    from svc_services.attachments.retention import purge_expired

    settings: ServicesSettings = app.state.settings
    await run_periodically("svc_services/storage_purge",
                           lambda: purge_expired(app.state.db, app.state.store, settings, app.state.clock.now()),
                           stop, interval=settings.storage_purge_interval_seconds, run_first=False)


async def close_store(app: FastAPI) -> None:
    await app.state.store.aclose()


def create_app(settings: ServicesSettings | None = None, *, verifier: TokenVerifier | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or ServicesSettings()
    app = create_service_app(
        settings=settings,
        package="svc_services",
        title="OneNet svc_services 诉求工单",
        description="事项清单、诉求受理、派单、办结、评价、时限与升级。Service catalogue, requests, SLA and escalation.",
        routers=[catalogue_router, requests_router, dispatch_router, materials_router, attachments_router,
                 grids_router, open311_router, deliberation_router, votes_router, notices_router,
                 publication_router, requesters_router, appointments_router, emergency_router, alarms_router],
        # Open311 GeoReport v2 submissions are form-encoded per the spec.
        # (photos and material files: multipart uploads with a body limit of their own, common.storage.uploads)
        extra_media_types={"/open311/": ("application/x-www-form-urlencoded",)},
        # reads of material files go to the person's access log in svc_residents (svc_services.attachments.reading)
        # and the request steps someone is told about to its notification engine (svc_services.notices)
        # emergency requests go to svc_residents' call-out chain (svc_services.emergency)
        feeds=(ACCESS_FEED, EMERGENCY_FEED, NOTICE_FEED),
        urgent_feeds=(EMERGENCY_FEED,),  # woken by the intake's commit, not the poll (ADR 0022)
        outbox_model=OutboxEvent,
        verifier=verifier,
        background=[sla_scheduler, storage_purge, deliberation_scan],
        on_shutdown=[close_clients, close_intake, close_store],
        clock=clock,
    )
    app.state.intake = IntakeWriter(app.state.db, settings)  # the one writer of submissions
    # inside the observability middleware, ahead of FastAPI's routing: well-formed submissions (ADR 0011)
    app.user_middleware.append(Middleware(DirectRoutes, routes=(SUBMIT_DIRECT,)))
    install_routing_errors(app)  # Open311's error format where no route answers under /open311/
    install_clients(app, settings)
    app.state.store = store_from_settings(settings)  # photos and material files (common.storage)
    app.state.protection = FieldProtection.from_file(settings.field_keys_file)  # materials' data keys
    return app
