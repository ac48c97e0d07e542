"""svc_residents: places, households, persons, special groups (一户一档 / 一人一档)."""
from __future__ import annotations

from fastapi import FastAPI

from common.app import create_service_app
from common.auth import TokenVerifier
from common.clock import Clock
from svc_residents import protection
from svc_residents.base import OutboxEvent
from svc_residents.callout.roster_router import router as rosters_router
from svc_residents.clients import close_clients, install_clients
from svc_residents.households.router import router as households_router
from svc_residents.identity.binding_router import router as binding_router
from svc_residents.identity.router import router as identity_router
from svc_residents.notifications import runtime as notifications
from svc_residents.notifications.router import router as notifications_router
from svc_residents.persons.place_feed import FEED_PREFIX as PLACE_FEED_PREFIX
from svc_residents.persons.profile_feed import FEED_PREFIX
from svc_residents.persons.router import router as persons_router
from svc_residents.places.router import router as places_router
from svc_residents.registrations.router import router as registrations_router
from svc_residents.settings import ResidentsSettings
from svc_residents.verification.router import router as verification_router


def create_app(settings: ResidentsSettings | None = None, *, verifier: TokenVerifier | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or ResidentsSettings()

    async def load_keys(app: FastAPI) -> None:
        app.state.protection = protection.load(settings.field_keys_file)
        install_clients(app, settings)
        await notifications.start(app)

    return create_service_app(
        settings=settings,
        package="svc_residents",
        title="OneNet svc_residents 居民档案",
        description="地点层级、户、人、特殊群体标签与一次采集核验。Places, households, persons, special groups.",
        routers=[places_router, households_router, persons_router, verification_router, identity_router,
                 registrations_router, binding_router, rosters_router, notifications_router],
        outbox_model=OutboxEvent,
        # requester_profile.* rows go to svc_services' replica, person_place.* to svc_matching's, never to svc_metrics
        feeds=(FEED_PREFIX, PLACE_FEED_PREFIX),
        verifier=verifier,
        clock=clock,
        on_startup=[load_keys],
        on_shutdown=[notifications.stop, close_clients],
        background=[notifications.dispatch_job],
    )
