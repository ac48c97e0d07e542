from __future__ import annotations

from pathlib import Path

from pydantic import Field, IPvAnyNetwork

from common.settings import AssertionKey, ServiceSettings


# How often each gateway re-reads revocations and grants (what other replicas changed) and pushes its edge's state.
REVOCATION_REFRESH_SECONDS = 2.0


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    database_url: str = "sqlite+aiosqlite:///var/gateway.db"
    # Directory of PEM signing keys; the newest signs, all are published in the JWKS.
    keys_dir: Path = Path("var/keys/jwt")
    token_ttl_seconds: int = 900
    # Upstreams by first path segment.
    upstream_services: str = "http://127.0.0.1:8001"
    upstream_residents: str = "http://127.0.0.1:8002"
    upstream_matching: str = "http://127.0.0.1:8003"
    upstream_metrics: str = "http://127.0.0.1:8004"
    upstream_departments: str = "http://127.0.0.1:8005"
    upstream_timeout_seconds: float = 10.0
    upstream_retries: int = 1
    # An event stream's answer (gateway/routing/streams.py) passes as it arrives, its connection open while the
    # upstream sends: each read may wait this long, above the stream's heartbeat (svc_residents: 15 s).
    stream_read_timeout_seconds: float = 45.0
    # A file upload's answer (common.storage.uploads) comes after the service examined and stored the file (a large
    # photo decoded and re-encoded: seconds of CPU on a loaded machine), so it may wait this long after the last byte.
    upload_read_timeout_seconds: float = 60.0
    breaker_failures: int = 5
    breaker_reset_seconds: float = 10.0
    # Calls answered but not yet written to the message log; beyond this the gateway refuses new exchanges.
    audit_max_backlog: int = 10_000
    # Past this many queued records a new call waits for the writer's next commit (backpressure), at most
    # `audit_admit_wait_seconds`, before it is forwarded.
    audit_soft_backlog: int = 2_000
    audit_admit_wait_seconds: float = 5.0
    # Write the message log from a child process (gateway/exchange/log_process.py), off this process's
    # interpreter; false writes it on the event loop (what the in-process tests use).
    audit_writer_process: bool = True
    # Token-bucket rate limits on forwarded calls (per calling member, and per user of a member's app).
    rate_limit_enabled: bool = True
    rate_member_per_second: float = 200.0
    rate_member_burst: int = 400
    rate_user_per_second: float = 20.0
    rate_user_burst: int = 40
    # Shared buckets across gateway replicas (ONENET_REDIS_URL); in memory when unset.
    redis_url: str | None = None
    # Key prefix of the shared buckets: one Redis can serve several platforms (or test runs) without them meeting.
    redis_prefix: str = "onenet:rl:"
    # How long a call waits for Redis before it is let through unlimited (fail open: a slow Redis must not slow
    # every call).
    redis_timeout_seconds: float = 0.5
    # Back-off for password sign-in (gateway/identity/throttle.py): after this many failed attempts for one account,
    # or from one source address, its next attempts are refused (429) for a back-off that doubles from
    # `login_backoff_seconds` up to `login_backoff_max_seconds`; a count is forgotten after a quiet window.
    # Shared by the replicas in Redis (`redis_url`), else in the gateway's database.
    login_account_failures: int = Field(default=5, ge=1)
    login_source_failures: int = Field(default=20, ge=1)
    login_window_seconds: float = Field(default=900.0, gt=0)
    login_backoff_seconds: float = Field(default=60.0, gt=0)
    login_backoff_max_seconds: float = Field(default=900.0, gt=0)
    # People's sessions (gateway/accounts): access tokens of this lifetime carrying the session id, refresh tokens
    # that rotate on each use, the session ending after this idle time or at its absolute end, whatever comes first.
    session_access_ttl_seconds: int = Field(default=600, ge=30)
    session_idle_seconds: float = Field(default=8 * 3600, gt=0)
    session_absolute_seconds: float = Field(default=7 * 86400, gt=0)
    # Roles that sign in with a second factor (TOTP) besides every administrator (gateway/accounts/mfa.py):
    # platform operations by default (等保三级: two factors for privileged users).
    mfa_required_roles: list[str] = Field(default_factory=lambda: ["ops"])
    # Kiosk sign-in with an ID card (gateway/accounts/kiosk.py): a reading older than this is refused; the
    # resident's kiosk session lasts at most this long and ends after this idle time.
    kiosk_reading_max_age_seconds: float = Field(default=60.0, gt=0)
    kiosk_session_seconds: int = Field(default=900, ge=60)
    kiosk_idle_seconds: int = Field(default=180, ge=30)
    # Residents' sign-in by phone (gateway/accounts/phone.py): a 6-digit code by SMS, valid this long, this many
    # tries; a resend waits `sms_resend_seconds`, doubling with each code sent to the phone in the last hour; at most
    # so many codes per phone and per source address an hour (the same for known and unknown phones).
    sms_code_seconds: int = Field(default=300, ge=30)
    sms_code_tries: int = Field(default=5, ge=1)
    sms_resend_seconds: float = Field(default=60.0, ge=0)
    sms_phone_per_hour: int = Field(default=5, ge=1)
    sms_source_per_hour: int = Field(default=20, ge=1)
    # Tests and local runs only (`onenet up` sets it): GET /auth/v1/testing/sms reads the last code the SMS
    # platform's emulator sent to a phone. Off by default; never on in production.
    sms_test_reads: bool = False
    # The platform's field-encryption and blind-index keys (common.crypto), shared with svc_residents: residents'
    # phones and ID numbers are stored encrypted, found by blind index.
    field_keys_file: Path = Path("var/keys/fields.json")
    # The platform's address as clients reach it (OpenID Connect discovery names it; unset: gateway_url).
    public_url: str | None = None
    # Derive the catalogue from the upstreams' OpenAPI plus annotations at start-up (in the background, retrying
    # until every upstream answered) and on POST /exchange/v1/catalogue/refresh; ADR 0005.
    catalogue_from_openapi: bool = True
    catalogue_retry_seconds: float = 5.0
    catalogue_retry_attempts: int = 12
    # Mutual-TLS identity of members behind a TLS-terminating front proxy: honour the client-certificate headers
    # it sets (X-Client-Cert-Fingerprint / X-SSL-Client-SHA256 / X-SSL-Client-Cert). Only when every request
    # reaches the gateway through that proxy and the proxy overwrites those headers; gateway.identity.mtls.
    client_cert_proxy_trusted: bool = False
    # The edge (gateway/edge, ADR 0012): nginx answering plain exchange calls in front of this process. Its
    # shared secret (the edge's calls to /exchange/internal/edge/* carry it; so do this gateway's pushes) and
    # where this gateway pushes its state (the edge's control listener). Unset: no edge.
    # (written into the edge's nginx configuration, hence its alphabet: what secrets.token_urlsafe makes)
    edge_secret: str | None = Field(default=None, min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")
    edge_control_url: str | None = None
    # Proxies in front of the edge (an ingress controller, a load balancer that does not keep the client's
    # address), as addresses or networks: from them the edge takes the client's address from X-Forwarded-For (the
    # rightmost entry not itself one of them: nginx's real_ip_recursive), else the connection's. Empty: the
    # connection's address is the client's, and an X-Forwarded-For a client sends is overwritten.
    edge_trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list, max_length=64)
    # X-Road instance identifier used in /r1/{instance}/... addresses and X-Road-Client / X-Road-Service headers.
    xroad_instance: str = "CN-ONENET"
    # The gateway issues the tokens; it has no relay-token of its own to fetch, and no JWKS URL to call.
    jwks_url: str | None = None

    # Each upstream's assertion key (ADR 0013; `gateway_assertion_key` for one without its own).
    assertion_key_services: AssertionKey | None = None
    assertion_key_residents: AssertionKey | None = None
    assertion_key_matching: AssertionKey | None = None
    assertion_key_metrics: AssertionKey | None = None
    assertion_key_departments: AssertionKey | None = None

    def assertion_keys(self) -> dict[str, str | None]:
        """Upstream name -> the key of the assertions the gateway adds to calls it forwards there."""
        own = {"services": self.assertion_key_services, "residents": self.assertion_key_residents,
               "matching": self.assertion_key_matching, "metrics": self.assertion_key_metrics,
               "departments": self.assertion_key_departments}
        keys = {name: key or self.gateway_assertion_key for name, key in own.items()}
        keys["open311"] = keys["services"]
        return keys

    def events_key(self) -> str | None:
        return self.events_assertion_key or self.assertion_keys()["metrics"]

    def upstreams(self) -> dict[str, str]:
        return {
            "services": self.upstream_services,
            "residents": self.upstream_residents,
            "matching": self.upstream_matching,
            "metrics": self.upstream_metrics,
            "departments": self.upstream_departments,
            "open311": self.upstream_services,  # Open311 GeoReport v2 is served by svc_services
        }
