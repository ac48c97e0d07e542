"""Settings shared by every service; each service subclasses `ServiceSettings`.

All values come from the environment with the `ONENET_` prefix (or are passed explicitly in tests). The local
launcher gives each child process its own environment, so `ONENET_DATABASE_URL` means "this process's database".
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

ONE_MIB = 1024 * 1024


PlanCacheMode = Literal["auto", "force_custom_plan", "force_generic_plan"]
# A gateway assertion key (docs/adr/0013): what secrets.token_urlsafe makes, at least 16 of its characters.
AssertionKey = Annotated[str, StringConstraints(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONENET_", extra="ignore", env_file=None)

    service_name: str = "onenet"
    database_url: str = "sqlite+aiosqlite:///var/onenet.db"
    # PostgreSQL's plan_cache_mode for this service's connections (ADR 0009): "auto" lets a prepared statement
    # settle on a generic plan; "force_custom_plan" plans each execution with its values.
    db_plan_cache_mode: PlanCacheMode = "auto"
    # Where the gateway publishes its public keys; services verify bearer tokens against it.
    jwks_url: str | None = "http://127.0.0.1:8000/.well-known/jwks.json"
    # A JWKS document on disk, used instead of jwks_url when set (launcher, tests, air-gapped installs).
    jwks_file: Path | None = None
    jwt_issuer: str = "onenet-gateway"
    jwt_audience: str = "onenet"
    max_body_bytes: int = ONE_MIB
    log_level: str = "INFO"
    # JSON log lines are written in chunks at most this often (a WARNING or worse at once); 0: line by line
    log_flush_seconds: float = 1.0
    # After start-up, everything allocated so far (modules, routes, models, caches) is moved out of the cyclic
    # garbage collector's reach (gc.freeze): it lives as long as the process, and every full collection walked
    # all of it while requests waited (gateway benchmark, 16 connections: p99 61–72 ms, with the freeze 7–8 ms).
    gc_freeze_at_startup: bool = True
    # svc_metrics ingest endpoint for the outbox relay; empty disables the relay (e.g. svc_metrics itself).
    events_url: str | None = "http://127.0.0.1:8004/metrics/v1/events"
    outbox_relay_enabled: bool = True
    outbox_batch_size: int = Field(default=200, ge=1, le=1000)
    outbox_poll_seconds: float = 0.5
    # Delivered outbox rows are deleted after this many days (0 keeps them): the gateway writes one per call.
    outbox_retention_days: float = Field(default=7.0, ge=0)
    # Feed subscribers (ADR 0007): event-type prefix -> the subscriber's replica endpoint, e.g.
    # ONENET_OUTBOX_SUBSCRIBERS='{"requester_profile.": "http://127.0.0.1:8001/services/v1/requester_profiles"}'.
    # Only the prefixes a service declares as feeds are read; rows of a feed without a subscriber wait, undelivered.
    outbox_subscribers: dict[str, str] = Field(default_factory=dict)
    # Client credentials this service uses for its own calls (outbox relay, background jobs).
    token_url: str | None = "http://127.0.0.1:8000/auth/v1/token"
    client_id: str | None = None
    client_secret: str | None = None
    # Base URL of the gateway for calls that must cross the exchange (department data, other services).
    gateway_url: str = "http://127.0.0.1:8000"
    # The bearer token the Prometheus scraper sends to /metrics; unset, /metrics is refused to everyone.
    metrics_token: str | None = Field(default=None, min_length=16, max_length=256)
    # The gateway's assertions (docs/adr/0013): the key calls to this service are checked with (a service answers
    # only calls the gateway forwarded; without a key it answers none but /healthz, /readyz, /metrics). In the
    # gateway: the key of every upstream that has none of its own (`GatewaySettings.assertion_key_*`).
    # (the edge writes the gateway's keys into its nginx configuration, hence the alphabet)
    gateway_assertion_key: AssertionKey | None = None
    # also taken while the key is rotated (deploy/README.md): the key the gateway signed with until now
    gateway_assertion_previous_key: AssertionKey | None = None
    # The key the outbox relay signs its deliveries to `events_url` with (svc_metrics' own; this one when unset),
    # and per feed prefix the key of its subscriber (ADR 0013: relays deliver straight to the service).
    events_assertion_key: AssertionKey | None = None
    outbox_subscriber_keys: dict[str, AssertionKey] = Field(default_factory=dict)

    def events_key(self) -> str | None:
        return self.events_assertion_key or self.gateway_assertion_key

    def subscriber_key(self, prefix: str) -> str | None:
        return self.outbox_subscriber_keys.get(prefix) or self.gateway_assertion_key
