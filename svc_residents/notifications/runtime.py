"""The engine's parts an app holds: the stream hub, the channel clients and the scheduler (a background job)."""
from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from common.assertion import auth_for
from common.periodic import AGAIN, run_periodically
from common.push import PushClient
from common.sms import SmsClient
from common.voice import VoiceClient
from svc_residents.notifications.dispatch import Channels, Dispatcher, Policy
from svc_residents.notifications.stream import Hub


def channels_on(client: httpx.AsyncClient, token) -> Channels:
    """The three platforms through one client (the gateway routes /departments/… to the emulators)."""
    return Channels(SmsClient(client, token), VoiceClient(client, token), PushClient(client, token))


async def _no_token() -> str:
    return ""


async def start(app: FastAPI) -> None:
    settings = app.state.settings
    hub = app.state.notification_hub = Hub(settings.redis_url)
    await hub.start(app.state.db.engine)
    token = app.state.service_token or _no_token
    # the platforms straight, with their access key (ADR 0017), or through the gateway when none is configured
    policy = Policy(base_seconds=settings.notify_retry_base_seconds, max_tries=settings.notify_max_tries)
    # as many kept-alive connections as sends in flight: a bulk round opens no new connection per message
    limits = httpx.Limits(max_connections=policy.concurrency, max_keepalive_connections=policy.concurrency)
    app.state.notification_http = httpx.AsyncClient(base_url=settings.notify_platforms_url or settings.gateway_url,
                                                    timeout=5.0, auth=auth_for(settings.notify_platforms_key),
                                                    limits=limits)
    app.state.notification_dispatcher = Dispatcher(app.state.db, channels_on(app.state.notification_http, token),
                                                   app.state.protection, policy)


async def stop(app: FastAPI) -> None:
    await app.state.notification_hub.stop(app.state.db.engine)
    await app.state.notification_http.aclose()


async def dispatch_job(app: FastAPI, stop_event: asyncio.Event) -> None:
    settings = app.state.settings
    if not settings.notify_dispatch_enabled:
        return

    async def once():
        d: Dispatcher = app.state.notification_dispatcher
        return AGAIN if await d.run_once(app.state.clock.now()) >= d.policy.batch else None

    await run_periodically("svc_residents/notifications", once, stop_event, interval=settings.notify_scan_seconds,
                           wake=app.state.notification_hub.dispatch_wake)
