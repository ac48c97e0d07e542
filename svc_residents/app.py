"""svc_residents: places, households, persons, special groups (一户一档 / 一人一档)."""
from __future__ import annotations

import asyncio

from fastapi import FastAPI

from common.app import create_service_app
from common.auth import TokenVerifier
from common.clock import Clock
from common.periodic import run_periodically
from svc_residents import protection
from svc_residents.base import OutboxEvent
from svc_residents.callout.roster_router import router as rosters_router
from svc_residents.callout.router import router as callout_router
from svc_residents.callout.service import FEED as CALLOUT_FEED
from svc_residents.devices.feed import FEED as ALARM_FEED
from svc_residents.broadcasts.router import router as broadcasts_router
from svc_residents.clients import close_clients, install_clients
from svc_residents.devices.router import router as devices_router
from svc_residents.households.router import router as households_router
from svc_residents.identity.binding_router import router as binding_router
from svc_residents.identity.router import router as identity_router
from svc_residents.notifications import runtime as notifications
from svc_residents.notifications.router import router as notifications_router
from svc_residents.persons.elector_feed import FEED_PREFIX as ELECTOR_FEED_PREFIX
from svc_residents.persons.place_feed import FEED_PREFIX as PLACE_FEED_PREFIX
from svc_residents.persons.profile_feed import FEED_PREFIX
from svc_residents.persons.router import router as persons_router
from svc_residents.places.router import router as places_router
from svc_residents.registrations.router import router as registrations_router
from svc_residents.settings import ResidentsSettings
from svc_residents.verification.router import router as verification_router


async def callout_scheduler(app: FastAPI, stop: asyncio.Event) -> None:
    """The emergency call-out's next steps (svc_residents/callout/scheduler.py), every scan interval."""
    from svc_residents.callout.scheduler import run_callout_scan

    settings: ResidentsSettings = app.state.settings
    if not settings.callout_scan_enabled:
        return
    await run_periodically("svc_residents/callout", lambda: run_callout_scan(
        app.state.db, app.state.clock, settings.callout_step_seconds), stop,
        interval=settings.callout_scan_interval_seconds, run_first=False)


async def device_scanner(app: FastAPI, stop: asyncio.Event) -> None:
    """Missed heartbeats and welfare checks of alarm devices (svc_residents/devices/scan.py)."""
    from svc_residents.devices.scan import run_device_scan

    settings: ResidentsSettings = app.state.settings
    if not settings.device_scan_enabled:
        return
    await run_periodically("svc_residents/devices", lambda: run_device_scan(app.state.db, app.state.clock), stop,
                           interval=settings.device_scan_interval_seconds, run_first=False)


async def broadcaster(app: FastAPI, stop: asyncio.Event) -> None:
    """Queued broadcasts handed to the notification engine (svc_residents/broadcasts/service.py)."""
    from svc_residents.broadcasts.service import run_broadcasts

    settings: ResidentsSettings = app.state.settings
    if not settings.broadcast_scan_enabled:
        return
    await run_periodically("svc_residents/broadcasts", lambda: run_broadcasts(app.state.db, app.state.clock), stop,
                           interval=settings.broadcast_scan_interval_seconds, run_first=False)


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
                 registrations_router, binding_router, rosters_router, callout_router, devices_router,
                 broadcasts_router, notifications_router],
        outbox_model=OutboxEvent,
        # requester_profile.* rows go to svc_services' replica, person_place.* to svc_matching's, never to svc_metrics
        # and callout.* (the call-out's steps) to svc_services' request timelines, alarm.* (devices' alarms) to its
        # request intake; those two are woken by their commits, not by the poll (ADR 0022)
        # elector.* (residency for votes) to svc_services' deliberation electorate (ADR 0018)
        feeds=(FEED_PREFIX, PLACE_FEED_PREFIX, ELECTOR_FEED_PREFIX, CALLOUT_FEED, ALARM_FEED),
        urgent_feeds=(CALLOUT_FEED, ALARM_FEED),
        verifier=verifier,
        clock=clock,
        on_startup=[load_keys],
        on_shutdown=[notifications.stop, close_clients],
        background=[notifications.dispatch_job, callout_scheduler, device_scanner, broadcaster],
    )
