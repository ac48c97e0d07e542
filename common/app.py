"""The FastAPI app every service is built on: middleware, problem handlers, health, readiness, metrics."""
from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common import acting
from common.assertion import GatewayAssertion, GatewayOnly, auth_for
from common.auth import ServiceTokenProvider, TokenVerifier
from common.clock import Clock
from common.db import Database
from common.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from common.logging import configure_logging
from common.migrations import ping_and_check
from common.observability import ObservabilityMiddleware, check_metrics_token
from common.openapi_contract import SHARED_PROBLEM_STATUSES, install_finished_openapi, install_method_not_allowed
from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender, HttpEventSender
from common.settings import ServiceSettings
from common.storage.uploads import upload_limit

log = logging.getLogger("onenet.app")

Hook = Callable[[FastAPI], Awaitable[None]]

PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}, "code": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "in": {"type": "string"}, "code": {"type": "string"},
            "message": {"type": "string"}}}},
    },
    "required": ["type", "title", "status", "code"],
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json errors."""
    return {s: {"description": "Problem", "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}}
            for s in statuses}


# every operation's shared statuses (common.openapi_contract adds 405's Allow, creates' replays, protocols' formats)
STANDARD_ERRORS = problem_responses(*SHARED_PROBLEM_STATUSES)


def install_local_docs(app: FastAPI, title: str) -> None:
    """Swagger UI served from the installed swagger-ui-bundle package: /docs works with no internet."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} · API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")


def create_service_app(
    *,
    settings: ServiceSettings,
    package: str | None,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    db: Database | None = None,
    outbox_model: type | None = None,
    verifier: TokenVerifier | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    extra_media_types: dict[str, tuple[str, ...]] | None = None,
    background: Sequence[Callable[[FastAPI, asyncio.Event], Awaitable[None]]] = (),
    openapi_url: str | None = "/openapi.json",
    event_token: Callable[[], Awaitable[str]] | None = None,
    feeds: Sequence[str] = (),
    urgent_feeds: Sequence[str] = (),
    clock: Clock | None = None,
    gateway_only: bool = True,
    body_limit: Callable[[str, str], int | None] | None = upload_limit,
) -> FastAPI:
    """`event_token` supplies the relay's bearer token; by default the service asks the gateway for one
    with its client credentials (the gateway, being the issuer, signs its own).

    `feeds`: the event-type prefixes this service writes to its outbox for a subscriber service instead of
    svc_metrics (ADR 0007). They never go to svc_metrics; each one with a subscriber in
    `settings.outbox_subscribers` gets a relay of its own. `urgent_feeds` (some of `feeds`): their relays are woken
    by the commit that wrote their rows instead of waiting for the next poll, and run on a thread and event loop of
    their own, so bulk work on the service's loop does not hold them up (the emergency path, ADR 0021/0022).

    `clock`: the app's one clock (`app.state.clock`, read through `common.clock.get_clock`); the system clock
    by default.

    `gateway_only`: the app answers only calls carrying the gateway's assertion (`common.assertion`, ADR 0013),
    besides /healthz, /readyz and /metrics; every service and the department emulators, not the gateway. Such an
    app also refuses a helper acting for a person every write on a route that declares no act
    (`common.acting.undeclared_writes`).

    `body_limit(method, path)`: a route's own body limit where it is larger than `settings.max_body_bytes`, None
    for the others: by default the file upload routes (`common.storage.uploads`), for the service that has them
    and the gateway that forwards them; such a route also takes multipart/form-data."""
    configure_logging(settings.service_name, settings.log_level, flush_seconds=settings.log_flush_seconds)
    # package None: a process without a database of its own (the department emulators).
    db = db or (Database(settings.database_url, plan_cache_mode=settings.db_plan_cache_mode) if package else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task] = []
        senders: list = []
        for hook in on_startup:
            await hook(app)
        if settings.gc_freeze_at_startup:
            gc.collect()  # what start-up left as garbage is freed, not frozen
            gc.freeze()
        relaying = outbox_model is not None and settings.outbox_relay_enabled
        retention = timedelta(days=settings.outbox_retention_days) if settings.outbox_retention_days else None
        provider = event_token
        if relaying and provider is None and settings.client_id and settings.client_secret and settings.token_url:
            provider = ServiceTokenProvider(settings.token_url, settings.client_id, settings.client_secret)
        if relaying and settings.events_url:
            sender = HttpEventSender(settings.events_url, provider, auth=auth_for(settings.events_key()))
            senders.append(sender)
            relay = OutboxRelay(db, outbox_model, source=settings.service_name, send=sender,
                                batch_size=settings.outbox_batch_size, poll_seconds=settings.outbox_poll_seconds,
                                types=TypeFilter(exclude=tuple(feeds)), retention=retention, clock=app.state.clock)
            app.state.outbox_relay = relay
            tasks.append(asyncio.create_task(relay.run_forever(stop), name="outbox-relay"))
        app.state.feed_relays = {}
        for prefix in feeds if relaying else ():
            url = settings.outbox_subscribers.get(prefix)
            if not url:
                log.warning("no subscriber for feed %s: its rows wait in the outbox (ONENET_OUTBOX_SUBSCRIBERS)",
                            prefix)
                continue
            feed_sender = FeedSender(url, provider, auth=auth_for(settings.subscriber_key(prefix)))
            senders.append(feed_sender)
            feed = OutboxRelay(db, outbox_model, source=settings.service_name, send=feed_sender,
                               batch_size=settings.outbox_batch_size, poll_seconds=settings.outbox_poll_seconds,
                               types=TypeFilter(include=(prefix,)), retention=retention, clock=app.state.clock,
                               label=f"{settings.service_name}/{prefix.rstrip('.')}",
                               wake_on_commit=prefix in urgent_feeds, own_loop=prefix in urgent_feeds)
            app.state.feed_relays[prefix] = feed
            tasks.append(asyncio.create_task(feed.run_forever(stop), name=f"outbox-feed-{prefix}"))
        for job in background:
            tasks.append(asyncio.create_task(job(app, stop), name=getattr(job, "__name__", "job")))
        try:
            yield
        finally:
            stop.set()
            for t in tasks:
                try:
                    await asyncio.wait_for(t, timeout=5)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                    t.cancel()
            for sender in senders:
                await sender.aclose()
            for hook in on_shutdown:
                await hook(app)
            if db is not None:
                await db.dispose()

    # redirect_slashes off: Starlette's trailing-slash redirect builds an absolute Location from the caller's Host
    # header (issue 23, finding 11), so `/x/` for a route `/x` would send a client wherever the caller chose; an
    # unknown path is a 404 problem like any other (the API's paths are exact)
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan,
                  responses=STANDARD_ERRORS, openapi_url=openapi_url, docs_url=None, redoc_url=None,
                  redirect_slashes=False)
    install_local_docs(app, title)
    app.state.settings = settings
    app.state.db = db
    app.state.package = package
    app.state.clock = clock or Clock()
    app.state.verifier = verifier or TokenVerifier(settings)
    install_error_handlers(app)
    if gateway_only:  # inside the observability middleware: a refusal has its request id, metrics, access line
        key = settings.gateway_assertion_key
        app.state.gateway_assertion = (GatewayAssertion(key, previous=settings.gateway_assertion_previous_key)
                                       if key else None)
        if key is None:
            log.error("no gateway assertion key (ONENET_GATEWAY_ASSERTION_KEY): every call but /healthz, /readyz "
                      "and /metrics is refused")
        app.add_middleware(GatewayOnly)
    app.add_middleware(ObservabilityMiddleware, service=settings.service_name,
                       max_body_bytes=settings.max_body_bytes, extra_media_types=extra_media_types,
                       body_limit=body_limit)

    ops = APIRouter(tags=["ops"])

    @ops.get("/healthz", summary="存活检查 Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @ops.get("/readyz", summary="就绪检查 Readiness (database reachable, migrations at head)",
             responses=problem_responses(503))
    async def readyz() -> Response:
        ok, reason = (True, "ok") if db is None else await ping_and_check(db.engine, package)
        if ok:
            return JSONResponse({"status": "ready", "service": settings.service_name})
        from common.errors import problem_response
        return problem_response(503, "service_unavailable", lang="zh-CN",
                                detail=(f"服务未就绪：{reason}", f"Not ready: {reason}"))

    @ops.get("/metrics", summary="Prometheus 指标（凭指标令牌） Prometheus metrics, for the scraper's bearer token",
             include_in_schema=True, responses=problem_responses(401, 403))
    async def metrics(request: Request) -> Response:
        check_metrics_token(settings.metrics_token, request.headers.get("authorization"))
        relays = [getattr(app.state, "outbox_relay", None), *getattr(app.state, "feed_relays", {}).values()]
        for relay in relays:
            if relay is None:
                continue
            try:
                await relay.measure()
            except Exception:  # noqa: BLE001 - metrics must render even if the database blips
                pass
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(ops)
    if gateway_only:  # a service: a helper acting for a person writes only through a route declaring its act
        app.router.dependencies.append(Depends(acting.undeclared_writes))
    for r in routers:
        app.include_router(r)
    install_method_not_allowed(app, routers)
    install_finished_openapi(app)
    return app
