from __future__ import annotations

from pydantic import Field

from common.settings import ServiceSettings
from svc_matching.engine import Weights


class MatchingSettings(ServiceSettings):
    service_name: str = "svc_matching"
    database_url: str = "sqlite+aiosqlite:///var/svc_matching.db"
    # System members allowed to keep the person-place replica (svc_residents' feed, ADR 0014); ops always may.
    person_place_sources: list[str] = Field(default_factory=lambda: ["svc_residents"])
    # System members allowed to deliver survey needs and demand (svc_metrics' survey_need. feed, ADR 0019).
    survey_need_sources: list[str] = Field(default_factory=lambda: ["svc_metrics"])
    # matching cost weights (see svc_matching.engine.model.Weights)
    match_weight_distance_per_km: float = Field(default=100.0, ge=0)
    match_weight_load: float = Field(default=100.0, ge=0)
    match_weight_rating: float = Field(default=100.0, ge=0)
    match_weight_priority: float = Field(default=1000.0, ge=0)
    match_unassigned_penalty: float = Field(default=100000.0, ge=0)
    match_neutral_rating: float = Field(default=3.5, ge=1, le=5)
    match_walk_circle_m: float = Field(default=1000.0, gt=0)
    match_candidates: int = Field(default=5, ge=1, le=50)
    offer_ttl_minutes: int = Field(default=120, ge=1)
    offer_sweep_seconds: float = Field(default=30.0, gt=0)
    offer_sweeper_enabled: bool = True
    reminder_sweep_seconds: float = Field(default=60.0, gt=0)  # booking and activity reminders (bookings.reminders)
    # members (kiosk apps, role system) that may check residents in to activities at the venue
    activity_kiosk_members: list[str] = Field(default_factory=lambda: ["kiosk"])
    # 服务预约: a booking for a request asks svc_services (through the gateway, gateway_url) whose request it is
    services_timeout_seconds: float = Field(default=3.0, gt=0)

    def weights(self) -> Weights:
        return Weights(distance_per_km=self.match_weight_distance_per_km, load=self.match_weight_load,
                       rating=self.match_weight_rating, neutral_rating=self.match_neutral_rating,
                       priority=self.match_weight_priority, unassigned=self.match_unassigned_penalty,
                       walk_circle_m=self.match_walk_circle_m)
