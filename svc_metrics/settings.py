from __future__ import annotations

from common.settings import ServiceSettings


class MetricsSettings(ServiceSettings):
    service_name: str = "svc_metrics"
    database_url: str = "sqlite+aiosqlite:///var/svc_metrics.db"
    # svc_metrics is the ingest target itself: it records its own facts directly, never through an outbox relay;
    # its outbox holds only the survey_need. feed (survey needs and demand for svc_matching, docs/adr/0019) and
    # the notice. feed (survey invitations and reminders for svc_residents' notifications, docs/adr/0017).
    events_url: str | None = None
    outbox_relay_enabled: bool = True
    # Most events one POST may carry (the 1 MiB body limit applies as well).
    max_events_per_batch: int = 1000
    # Early warnings: a surge is this many times the trailing daily mean (and at least surge_min_count requests).
    surge_factor: float = 2.0
    surge_min_count: int = 5
    surge_baseline_days: int = 28
    overdue_backlog_threshold: int = 5
    satisfaction_floor: float = 80.0
    # Surveys: a sub-group answered by fewer people is not shown, and an anonymous token's attributes are
    # generalised until this many invitees share them (docs/adr/0019-surveys.md).
    survey_min_group: int = 5
    # How often the platform gauges (backlog, overdue) are recomputed; 0 turns the job off.
    gauge_refresh_seconds: float = 30.0
    # How often the early-warning detectors run on their own (first run one interval after start); 0 = off.
    warning_scan_seconds: float = 900.0
