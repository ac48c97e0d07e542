from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from common.settings import PlanCacheMode, ServiceSettings


class ServicesSettings(ServiceSettings):
    service_name: str = "svc_services"
    # System members allowed to keep the requester-profile replica (the feed of ADR 0007); ops always may.
    requester_profile_sources: list[str] = Field(default_factory=lambda: ["svc_residents"])
    # System members whose feed tells requests' appointments (服务预约: svc_matching's bookings); ops always may.
    appointment_sources: list[str] = Field(default_factory=lambda: ["svc_matching"])
    # System members that write the emergency call-out's steps on a request's timeline (svc_residents' feed).
    callout_sources: list[str] = Field(default_factory=lambda: ["svc_residents"])
    # System members that file devices' alarms as emergency requests (svc_residents' alarm feed, ADR 0022), and the
    # catalogue item they are filed under.
    alarm_sources: list[str] = Field(default_factory=lambda: ["svc_residents"])
    alarm_item_code: str = Field(default="YJ-HJ-001", min_length=1, max_length=32)
    database_url: str = "sqlite+aiosqlite:///var/svc_services.db"
    # Custom plans on PostgreSQL (ADR 0009): generic plans made on a fresh deployment's empty tables kept one-row
    # estimates (intake's duplicates through (grid, state) and a sort; outbox marks by a sequential scan).
    db_plan_cache_mode: PlanCacheMode = "force_custom_plan"
    # Emergency items (一键呼叫, smoke alarm): acknowledge within 1 minute, start handling within 3.
    emergency_ack_seconds: int = Field(default=60, ge=1)
    emergency_start_seconds: int = Field(default=180, ge=1)
    # While a request stays overdue it climbs one more level (grid → community → street → department)
    # every this many calendar hours; emergency requests every emergency_escalation_seconds.
    escalation_interval_hours: float = Field(default=24.0, gt=0)
    emergency_escalation_seconds: int = Field(default=180, ge=1)
    # Resolved (or rated) requests close by themselves after this many days.
    auto_close_days: int = Field(default=7, ge=1)
    # Working hours in Asia/Shanghai, as "HH:MM-HH:MM" windows (lunch break between them).
    working_windows: list[str] = ["09:00-12:00", "13:30-17:30"]
    # Extra dates (YYYY-MM-DD) beyond the chinese-calendar data: local holidays and make-up working days (调休).
    extra_holidays: list[str] = []
    extra_workdays: list[str] = []
    # A location without a grid code is placed in the nearest known grid whose centre is within this distance.
    grid_match_radius_m: float = Field(default=1500.0, gt=0)
    # Possible duplicates suggested on submission: open requests of the same item this close in space and time.
    duplicate_radius_m: float = Field(default=50.0, gt=0)
    duplicate_window_hours: float = Field(default=72.0, gt=0)
    # The background SLA scan (run_sla_scan); the first run waits one interval.
    sla_scan_enabled: bool = True
    sla_scan_interval_seconds: float = Field(default=30.0, gt=0)
    # Open311 public reads leave out requests of these categories entirely (PIPL sensitive personal information:
    # health, disability, counselling); they can still be submitted through Open311 and read with a token.
    open311_hidden_categories: list[str] = ["health", "disability", "counselling"]
    # The platform's address as clients reach it (the gateway's public URL, e.g. https://onenet.example.gov.cn):
    # Open311 discovery advertises it, never the address a call arrived at, which is svc_services' own port
    # behind the gateway or a Host header the caller chose. Unset: gateway_url.
    public_url: str | None = None
    # Where dispatch recommendations come from: svc_matching directly, or through the gateway (default).
    matching_url: str | None = None
    matching_timeout_seconds: float = Field(default=3.0, gt=0)
    matching_candidates: int = Field(default=5, ge=1, le=50)
    # Once-only materials (一次采集): department data fetched through the gateway's exchange (gateway_url).
    exchange_timeout_seconds: float = Field(default=5.0, gt=0)
    # A department system's download of a request's file is checked against the exchange's grant registry (read as
    # the owner of services.materials / services.request_photos, with the client credentials), cached this long.
    grant_cache_seconds: float = Field(default=2.0, ge=0)
    # Photos and material files (svc_services.attachments, issue 27): the object store. "local": files under
    # storage_dir (default <ONENET_VAR_DIR>/objects/svc_services, what `make run` uses); "s3": an S3-compatible
    # bucket (s3_bucket at s3_endpoint_url; credentials from these settings or boto3's usual environment).
    storage_backend: Literal["local", "s3"] = "local"
    var_dir: Path = Path("var")
    storage_dir: Path | None = None
    s3_bucket: str = "onenet-svc-services"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = ""
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    storage_timeout_seconds: float = Field(default=5.0, gt=0)
    # Materials (ID card scans, certificates) are encrypted at rest under data keys the field keys wrap.
    field_keys_file: Path = Path("var/keys/fields.json")
    # Retention, counted from the end of the request (closed, cancelled, rejected or merged): then the purge job
    # deletes the files (the rows stay, marked purged). Materials go sooner: they are the most sensitive.
    photo_retention_days: int = Field(default=730, ge=1)
    material_retention_days: int = Field(default=180, ge=1)
    storage_purge_interval_seconds: float = Field(default=3600.0, gt=0)
    # How long a signed photo URL in Open311's public documents (media_url) stays good (attachments.signed).
    media_url_ttl_seconds: int = Field(default=900, ge=60, le=7 * 86400)

    @model_validator(mode="after")
    def _storage_dir(self) -> "ServicesSettings":
        if self.storage_dir is None:
            self.storage_dir = self.var_dir / "objects" / self.service_name
        return self
