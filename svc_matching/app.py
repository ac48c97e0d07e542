"""svc_matching: resource directory (HSDS), volunteers, needs, matching engine, offers, time bank."""
from __future__ import annotations

from fastapi import FastAPI

from common.app import create_service_app
from common.auth import TokenVerifier
from common.clock import Clock
from svc_matching.activities.router import router as activities_router
from svc_matching.base import OutboxEvent
from svc_matching.bookings.appointments import FEED as APPOINTMENT_FEED
from svc_matching.bookings.notices import FEED as NOTICE_FEED
from svc_matching.bookings.reminders import reminder_sweeper
from svc_matching.bookings.router import router as bookings_router
from svc_matching.clients import close_clients, install_clients
from svc_matching.directory.hsds_router import router as hsds_router
from svc_matching.directory.router import router as directory_router
from svc_matching.offers.router import offer_sweeper
from svc_matching.offers.router import router as offers_router
from svc_matching.people.places_router import router as places_router
from svc_matching.people.router import router as people_router
from svc_matching.reports.router import router as reports_router
from svc_matching.timebank.router import router as timebank_router
from svc_matching.settings import MatchingSettings


def create_app(settings: MatchingSettings | None = None, *, verifier: TokenVerifier | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or MatchingSettings()

    async def open_clients(app: FastAPI) -> None:
        install_clients(app, settings)

    return create_service_app(
        settings=settings,
        package="svc_matching",
        title="OneNet svc_matching 供需匹配",
        description="社区资源清单（HSDS 3.0）、志愿者、居民需求清单、精准匹配、派单接单、时间银行、场地与服务预约、活动报名。"
                    "Resource directory (HSDS 3.0), volunteers, needs, matching, offers, time bank, bookings, activities.",
        routers=[directory_router, hsds_router, people_router, places_router, offers_router, timebank_router,
                 reports_router, bookings_router, activities_router],
        # the sweepers share one switch (tests drive them by hand under the injected clock)
        background=[offer_sweeper, reminder_sweeper] if settings.offer_sweeper_enabled else [],
        outbox_model=OutboxEvent,
        # appointment.* rows (a request's booking steps) go to svc_services' requests, notice.* rows to
        # svc_residents' notifications (they name the person), never to svc_metrics
        feeds=(APPOINTMENT_FEED, NOTICE_FEED),
        on_startup=[open_clients],
        on_shutdown=[close_clients],
        verifier=verifier,
        clock=clock,
    )
