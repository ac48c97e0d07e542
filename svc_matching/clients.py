"""Outgoing calls of svc_matching: `app.state.services_client`, svc_services through the gateway (`gateway_url`;
ADR 0013), with the caller's token, for a service appointment's request (bookings.appointments). Tests swap in
a mock or in-process transport."""
from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI

from common.deps import state
from common.http_client import CircuitBreaker, ServiceClient
from svc_matching.settings import MatchingSettings

# what an endpoint takes to call svc_services (`client: ServicesClient`)
ServicesClient = Annotated[ServiceClient, state("services_client")]


def install_clients(app: FastAPI, settings: MatchingSettings) -> None:
    app.state.services_client = ServiceClient(
        "svc_services", settings.gateway_url, timeout=settings.services_timeout_seconds, retries=1,
        breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10.0))


async def close_clients(app: FastAPI) -> None:
    client = getattr(app.state, "services_client", None)
    if client is not None:
        await client.aclose()
