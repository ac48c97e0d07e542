"""The gateway: identity provider, exchange members, routing to the services, aggregated API docs."""
from __future__ import annotations

import asyncio
import logging

import httpx
from fastapi import FastAPI, Request
from sqlalchemy import select

from common.app import create_service_app
from common.assertion import GatewayAssertion
from common.auth import Principal, TokenVerifier, get_principal
from common.clock import Clock
from common.periodic import DONE, Next, run_periodically
from common.db import Database
from common.http_client import CircuitBreaker
from common.keys import load_signing_keys
from common.observability import Telemetry
from gateway.accounts.jobs import build_sessions, load_revoked_sessions, refresh_revoked_sessions
from gateway.accounts.binding import build_binder
from gateway.accounts.phone import build_phone_signin
from gateway.accounts.router import router as accounts_router
from gateway.identity.mtls import CertificatePins
from gateway.identity.router import router as identity_router
from gateway.identity.throttle import build_login_throttle
from gateway.identity.tokens import TokenIssuer
from gateway.members.models import Member
from gateway.members.router import router as members_router
from gateway.base import OutboxEvent
from gateway.edge.link import EdgeLink
from gateway.edge.router import router as edge_router
from gateway.exchange.audit import AuditWriter
from gateway.exchange.log_process import LogProcess
from gateway.exchange.models import MessageLog
from gateway.exchange.policy import ExchangePolicy
from gateway.exchange.router import router as exchange_router
from gateway.exchange.service import ensure_catalogue, load_policy, refresh_catalogue
from gateway.ratelimit import build_limiter
from gateway.routing import open311 as open311_routing
from gateway.routing.gate import ExchangeGate
from gateway.routing.forwarder import Forwarder, Upstream
from gateway.routing.openapi import AggregatedOpenAPI
from gateway.routing.router import router as routing_router
from gateway.routing.xroad import router as xroad_router
from gateway.settings import REVOCATION_REFRESH_SECONDS, GatewaySettings

log = logging.getLogger("onenet.gateway")



def create_app(settings: GatewaySettings | None = None, *, verifier: TokenVerifier | None = None,
               transports: dict[str, httpx.AsyncBaseTransport] | None = None,
               clock: Clock | None = None) -> FastAPI:
    """`verifier` is accepted for symmetry with the services; the gateway verifies with its own keys."""
    settings = settings or GatewaySettings()
    db = Database(settings.database_url)
    keys = load_signing_keys(settings.keys_dir)
    token_clock = Clock()  # tokens live on real time, whatever `clock` the app's business runs on
    issuer = TokenIssuer(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                         ttl_seconds=settings.token_ttl_seconds, clock=token_clock)
    own_verifier = TokenVerifier(settings, jwks=issuer.jwks(), clock=token_clock)
    assertion_keys = settings.assertion_keys()
    upstreams = {
        name: Upstream(name, url, timeout=settings.upstream_timeout_seconds, retries=settings.upstream_retries,
                       stream_read=settings.stream_read_timeout_seconds,
                       upload_read=settings.upload_read_timeout_seconds,
                       breaker=CircuitBreaker(failure_threshold=settings.breaker_failures,
                                              reset_timeout=settings.breaker_reset_seconds),
                       transport=(transports or {}).get(name),
                       assertion=(GatewayAssertion(assertion_keys[name], clock=token_clock)
                                  if assertion_keys.get(name) else None))
        for name, url in settings.upstreams().items()
    }
    if not all(assertion_keys.values()):  # the services refuse every call without the gateway's assertion
        log.error("no assertion key for the upstreams %s (ONENET_ASSERTION_KEY_<UPSTREAM> or "
                  "ONENET_GATEWAY_ASSERTION_KEY; docs/adr/0013): they refuse every call",
                  sorted(n for n, k in assertion_keys.items() if not k))
    revoked: set[str] = set()
    pins = CertificatePins(trust_proxy=settings.client_cert_proxy_trusted)
    forwarder = Forwarder(upstreams, own_verifier, revoked, pins=pins)
    sessions, revoked_sessions = build_sessions(settings, db, issuer)
    forwarder.revoked_sessions = revoked_sessions
    clock = clock or Clock()
    policy = ExchangePolicy()
    audit = AuditWriter(db, MessageLog, OutboxEvent, max_backlog=settings.audit_max_backlog,
                        soft_backlog=settings.audit_soft_backlog, admit_wait=settings.audit_admit_wait_seconds,
                        process=(LogProcess(settings.database_url, plan_cache_mode=settings.db_plan_cache_mode)
                                 if settings.audit_writer_process else None), clock=clock)
    limiter = build_limiter(settings)
    login_throttle = build_login_throttle(settings, db)
    phone_signin = build_phone_signin(settings, db, issuer, upstreams.get("departments"))  # residents by SMS
    binder = build_binder(issuer, upstreams.get("residents"))  # their real-name binding (svc_residents)
    gate = ExchangeGate(forwarder, policy, audit, clock, limiter)
    # the edge answers every upstream's plain calls but Open311's (anonymous reads and api_key: the gateway's)
    edge = (EdgeLink(settings.edge_control_url, settings.edge_secret, policy,
                     [n for n in upstreams if n != "open311"])
            if settings.edge_secret and settings.edge_control_url else None)

    async def load_exchange(app: FastAPI) -> None:
        await ensure_catalogue(db, clock.now())
        await load_policy(db, policy, clock.now())
        if edge is not None:
            edge.revoked, edge.pins = revoked, pins
            await edge.changed()

    async def derive_catalogue(app: FastAPI, stop: asyncio.Event) -> None:
        # In the background: the services may start after the gateway; retry until every upstream answered.
        if not settings.catalogue_from_openapi:
            return

        async def refresh() -> Next | None:
            report = await refresh_catalogue(db, app.state.openapi_aggregate, policy, clock.now())
            app.state.catalogue_report = report
            if edge is not None:
                await edge.changed()
            return None if report["missing"] else DONE

        await run_periodically("gateway/catalogue-from-openapi", refresh, stop,
                               interval=settings.catalogue_retry_seconds,
                               attempts=max(1, settings.catalogue_retry_attempts))

    async def write_audit(app: FastAPI, stop: asyncio.Event) -> None:
        await audit.run_forever(stop)

    async def load_revoked(app: FastAPI) -> None:
        generation = pins.generation
        async with db.session() as session:
            codes = (await session.execute(select(Member.code).where(Member.status != "active"))).scalars()
            revoked.clear()
            revoked.update(codes)
            pinned = (await session.execute(select(Member.code, Member.client_cert_sha256).where(
                Member.client_cert_sha256.is_not(None)))).all()
        if pins.generation == generation:  # else changed here meanwhile; the next refresh reads the newer state
            pins.load(pinned)

    async def refresh_revocations(app: FastAPI, stop: asyncio.Event) -> None:
        # Other gateway replicas revoke too; re-read the list so a revocation anywhere applies everywhere (a failed
        # read keeps the last known list).
        async def refresh() -> None:
            await load_revoked(app)
            await load_policy(db, policy, clock.now())
            if edge is not None:  # what other replicas changed applies at this one's edge too
                await edge.reloaded(revoked, pins)

        await run_periodically("gateway/revocations", refresh, stop, interval=REVOCATION_REFRESH_SECONDS,
                               run_first=False)

    async def event_token() -> str:
        # The issuer needs no round trip to itself: it signs the relay's token directly.
        return issuer.issue(subject="gateway", member="gateway", role="system", scopes=["events:write"])["access_token"]

    async def close_upstreams(app: FastAPI) -> None:
        await forwarder.aclose()
        if edge is not None:
            await edge.aclose()
        if limiter is not None:
            await limiter.aclose()
        await login_throttle.aclose()
        await phone_signin.aclose()
        await binder.aclose()

    app = create_service_app(
        settings=settings,
        package="gateway",
        title="OneNet gateway 统一数据交换网关",
        description="身份认证、成员单位、路由转发与聚合文档。Identity, exchange members, routing, aggregated docs.",
        routers=[identity_router, accounts_router, members_router, exchange_router, edge_router, xroad_router,
                 routing_router],
        db=db,
        outbox_model=OutboxEvent,
        verifier=own_verifier,
        on_startup=[load_revoked, load_revoked_sessions, load_exchange],
        on_shutdown=[close_upstreams],
        background=[refresh_revocations, refresh_revoked_sessions, write_audit, derive_catalogue],
        extra_media_types={"/auth/": ("application/x-www-form-urlencoded", "multipart/form-data"),
                           "/open311/": ("application/x-www-form-urlencoded",),
                           "/exchange/internal/edge/": ("application/x-ndjson",)},
        openapi_url=None,
        event_token=event_token,
        clock=clock,
        gateway_only=False,
    )
    open311_routing.install_routing_errors(app)  # where the forward route cannot take an /open311/ path
    app.state.token_issuer = issuer
    app.state.login_throttle = login_throttle
    app.state.phone_signin = phone_signin
    app.state.binder = binder
    app.state.sessions = sessions
    app.state.revoked_sessions = revoked_sessions
    app.state.forwarder = forwarder
    app.state.exchange_policy = policy
    app.state.audit = audit
    app.state.exchange_gate = gate
    app.state.edge_telemetry = Telemetry(settings.service_name)  # the calls the edge answered, in /metrics
    app.state.revoked_members = revoked
    app.state.cert_pins = pins
    app.state.edge = edge

    async def principal_with_certificate(request: Request) -> Principal:
        # the gateway's own operations: a member with a client certificate on file must present it here too
        principal = await get_principal(request)
        if pins.pins:
            pins.check(principal.member, request.scope)
        return principal

    app.dependency_overrides[get_principal] = principal_with_certificate
    # `open311` is svc_services again (its GeoReport paths are in svc_services' own document)
    app.state.openapi_aggregate = AggregatedOpenAPI({n: u for n, u in upstreams.items() if n != "open311"})
    return app
