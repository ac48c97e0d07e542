"""Outgoing calls of svc_residents, pooled `ServiceClient`s made once per app (tests swap in mock transports):

- `services_client` / `matching_client`: svc_services and svc_matching for the household file, through the gateway
  (`gateway_url`, which routes `/services/...` and `/matching/...`) or a direct URL, with the caller's token
  propagated, so each service applies its own object-level checks to the caller.
- `department_clients[code]`: the gateway's exchange for once-only verification (`/departments/{code}/v1/queries`),
  one client (and so one circuit breaker) per department, with svc_residents' own client-credentials token
  (`service_token`): the exchange member `svc_residents` holds the grants.
- `exchange_client` / `grant_source`: the exchange's grant registry, read with the same token as the owner of
  `residents.persons`, to know which departments may read which person fields (svc_residents/grants.py).
"""
from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI

from common.auth import ServiceTokenProvider
from common.deps import state
from common.http_client import CircuitBreaker, ServiceClient
from svc_residents.grants import ExchangeGrants
from svc_residents.settings import ResidentsSettings
from svc_residents.verification.departments import DEPARTMENTS

# what endpoints take (`client: ServicesClient`): the clients `install_clients` makes, by their names in the app's state
ServicesClient = Annotated[ServiceClient, state("services_client")]
MatchingClient = Annotated[ServiceClient, state("matching_client")]
DepartmentClients = Annotated[dict[str, ServiceClient], state("department_clients")]
ServiceToken = Annotated[ServiceTokenProvider | None, state("service_token")]


def install_clients(app: FastAPI, settings: ResidentsSettings) -> None:
    app.state.services_client = ServiceClient(
        "svc_services", settings.services_url or settings.gateway_url, timeout=settings.upstream_timeout_seconds,
        retries=1, breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10.0))
    app.state.matching_client = ServiceClient(
        "svc_matching", settings.matching_url or settings.gateway_url, timeout=settings.upstream_timeout_seconds,
        retries=1, breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10.0))
    app.state.department_clients = {
        code: ServiceClient(f"department:{code}", settings.gateway_url, timeout=settings.verification_timeout_seconds,
                            retries=settings.verification_retries,
                            breaker=CircuitBreaker(failure_threshold=settings.verification_breaker_failures,
                                                   reset_timeout=settings.verification_breaker_reset_seconds))
        for code in DEPARTMENTS}
    app.state.service_token = (
        ServiceTokenProvider(settings.token_url, settings.client_id, settings.client_secret)
        if settings.client_id and settings.client_secret and settings.token_url else None)
    app.state.exchange_client = ServiceClient("exchange", settings.gateway_url,
                                              timeout=settings.upstream_timeout_seconds, retries=1,
                                              breaker=CircuitBreaker(failure_threshold=5, reset_timeout=5.0))
    app.state.grant_source = ExchangeGrants(app.state.exchange_client, app.state.service_token,
                                            ttl_seconds=settings.grant_cache_seconds, service=("居民档案服务", "svc_residents"))


async def close_clients(app: FastAPI) -> None:
    clients = [getattr(app.state, n, None) for n in ("services_client", "matching_client", "exchange_client")]
    clients += list(getattr(app.state, "department_clients", {}).values())
    for c in clients:
        if c is not None:
            await c.aclose()
