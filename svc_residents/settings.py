from __future__ import annotations

from pathlib import Path

from pydantic import Field

from common.settings import AssertionKey, ServiceSettings


class ResidentsSettings(ServiceSettings):
    service_name: str = "svc_residents"
    database_url: str = "sqlite+aiosqlite:///var/svc_residents.db"
    # Field-encryption and blind-index keys (env ONENET_FIELD_KEYS_FILE); created on first start if missing.
    field_keys_file: Path = Path("var/keys/fields.json")
    # Household file: svc_services and svc_matching are read through the gateway (gateway_url) with the
    # caller's token, unless a direct URL is given; a part that does not answer in time is marked unavailable.
    services_url: str | None = None
    matching_url: str | None = None
    upstream_timeout_seconds: float = Field(default=3.0, gt=0)
    # Pages of an upstream list read for one household file (the upstream lists filter by grid, not person).
    upstream_max_pages: int = Field(default=5, ge=1, le=50)
    # Once-only verification: departments asked through the gateway's exchange with svc_residents' own
    # client-credentials token (ONENET_CLIENT_ID / ONENET_CLIENT_SECRET / ONENET_TOKEN_URL).
    verification_timeout_seconds: float = Field(default=3.0, gt=0)
    verification_retries: int = Field(default=1, ge=0, le=5)
    # Per department: after this many failures in a row calls stop for the reset time (answered `pending`).
    verification_breaker_failures: int = Field(default=5, ge=1)
    verification_breaker_reset_seconds: float = Field(default=5.0, gt=0)
    # Exchange grants on residents.persons are read from the gateway's registry (as the resource's owner, with the
    # client credentials above) and cached this long; a revoked grant stops working within this bound.
    grant_cache_seconds: float = Field(default=2.0, ge=0)
    # Emergency call-out (svc_residents/callout): who starts one (svc_services' emergency feed), how long each step
    # waits for an acknowledgement before the next one on duty is called, how often the scheduler looks.
    emergency_sources: list[str] = Field(default_factory=lambda: ["svc_services"])
    callout_step_seconds: float = Field(default=60.0, gt=0)
    callout_scan_interval_seconds: float = Field(default=1.0, gt=0)
    callout_scan_enabled: bool = True
    # Alarm devices (svc_residents/devices): how often missed heartbeats and welfare checks are looked for.
    device_scan_interval_seconds: float = Field(default=30.0, gt=0)
    device_scan_enabled: bool = True
    # Broadcasts (svc_residents/broadcasts): how often queued notices are fanned out to the notification engine.
    broadcast_scan_interval_seconds: float = Field(default=1.0, gt=0)
    broadcast_scan_enabled: bool = True
    # Notifications (svc_residents/notifications, ADR 0017): Redis carries the live stream's wake-ups across replicas
    # (without it each SSE connection reads the database every notify_stream_poll_seconds); the scheduler claims due
    # deliveries every notify_scan_seconds and retries a channel notify_max_tries times from
    # notify_retry_base_seconds, doubling, before falling back to the next.
    redis_url: str | None = None
    notify_dispatch_enabled: bool = True
    notify_scan_seconds: float = Field(default=1.0, gt=0)
    notify_retry_base_seconds: float = Field(default=5.0, gt=0)
    notify_max_tries: int = Field(default=4, ge=1, le=20)
    notify_stream_poll_seconds: float = Field(default=1.0, gt=0)
    # An SSE connection sends a comment every notify_stream_heartbeat_seconds of silence (so proxies keep it open:
    # the gateway's and the edge's read timeouts are longer), lives at most notify_stream_lifetime_seconds (then the
    # client reconnects with Last-Event-ID after notify_stream_retry_ms) and never past its token's expiry.
    notify_stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    notify_stream_lifetime_seconds: float = Field(default=1800.0, gt=0)
    notify_stream_retry_ms: int = Field(default=1000, ge=0, le=60000)
    # System members whose outbox feeds deliver notice events (PUT /residents/v1/notices/{event_id}); ops always may.
    notice_sources: list[str] = Field(default_factory=lambda: ["svc_services", "svc_matching", "svc_metrics"])
    # The outbound platforms (SMS, 语音外呼, app push: outside systems, not department data of the exchange) are called
    # straight at their URL with their access key (the emulators': their gateway assertion key); unset, the gateway's.
    notify_platforms_url: str | None = None
    notify_platforms_key: AssertionKey | None = None
