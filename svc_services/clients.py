"""Outgoing calls of svc_services, both pooled `ServiceClient`s made once per app (tests swap in mock transports):

- `app.state.matching_client`: svc_matching for dispatch recommendations, at `matching_url`, or through the gateway
  (`gateway_url`, default) which routes `/matching/...` to it. The caller's token is propagated.
- `app.state.exchange_client`: the gateway's exchange for once-only materials: the residents' records
  (`/residents/v1/persons/{id}?reveal=true`, with the caller's token: svc_residents decides whether this staff member
  may see the ID number, and logs the read) and the departments (`/departments/{code}/v1/queries`). Department
  calls carry svc_services' own client-credentials token when it has one (ONENET_CLIENT_ID / ONENET_CLIENT_SECRET:
  the exchange member `svc_services` holds the grants for the materials), otherwise the caller's token (then the
  member the staff member signed in through needs the grant). Every call names its purpose (X-OneNet-Purpose).
"""
from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI

from common.auth import ServiceTokenProvider
from common.deps import state
from common.grants import ExchangeGrants
from common.http_client import CircuitBreaker, ServiceClient
from svc_services.settings import ServicesSettings

# what an endpoint takes to call svc_matching (`client: MatchingClient`)
MatchingClient = Annotated[ServiceClient, state("matching_client")]


def install_clients(app: FastAPI, settings: ServicesSettings) -> None:
    app.state.matching_client = ServiceClient(
        "svc_matching", settings.matching_url or settings.gateway_url, timeout=settings.matching_timeout_seconds,
        retries=1, breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10.0))
    app.state.exchange_client = ServiceClient(
        "exchange", settings.gateway_url, timeout=settings.exchange_timeout_seconds, retries=1,
        breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10.0))
    app.state.service_token = (
        ServiceTokenProvider(settings.token_url, settings.client_id, settings.client_secret)
        if settings.client_id and settings.client_secret and settings.token_url else None)
    # the grants departments hold on svc_services' files (services.materials, services.request_photos), read from
    # the exchange's registry as their owner with the same token (common/grants.py)
    app.state.grant_source = ExchangeGrants(app.state.exchange_client, app.state.service_token,
                                            ttl_seconds=settings.grant_cache_seconds, service=("诉求服务", "svc_services"))


async def close_clients(app: FastAPI) -> None:
    for name in ("matching_client", "exchange_client"):
        client = getattr(app.state, name, None)
        if client is not None:
            await client.aclose()
