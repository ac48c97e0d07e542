"""The matching engine's plain data: needs, providers, their slots, the cost weights, and what it answers."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime




@dataclass(frozen=True)
class Weights:
    """Cost weights (points); configuration, see `MatchingSettings`."""

    distance_per_km: float = 100.0      # points per km between need and provider
    load: float = 100.0                 # points when the provider would be at full capacity
    rating: float = 100.0               # points for the worst past rating (1 of 5), 0 for 5 of 5
    neutral_rating: float = 3.5         # assumed rating for a provider nobody has rated yet
    priority: float = 1000.0            # extra penalty per priority step for leaving a need unassigned
    unassigned: float = 100000.0        # base penalty for leaving a need unassigned
    walk_circle_m: float = 1000.0       # the 15-minute circle (15 min walk ≈ 1 km) when no service area is set
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class Slot:
    """A weekly opening: weekday 0 = Monday, minutes since local midnight [start, end)."""

    weekday: int
    start_min: int
    end_min: int


@dataclass(frozen=True)
class Need:
    id: str
    category: str
    lat: float
    lon: float
    priority: int = 1                       # 1 normal … higher is more urgent (special groups raise it)
    window_start: datetime | None = None
    window_end: datetime | None = None
    age: int | None = None
    tags: frozenset[str] = frozenset()
    place_code: str | None = None


@dataclass(frozen=True)
class Provider:
    id: str
    categories: frozenset[str]
    lat: float
    lon: float
    capacity: int                           # total concurrent / per-period capacity
    active: int = 0                         # work already held
    radius_m: float | None = None           # service area radius; None → the 15-minute circle
    area_codes: tuple[str, ...] = ()        # service area as place codes (a need inside any of them qualifies)
    rating: float | None = None
    min_age: int | None = None
    max_age: int | None = None
    eligibility: frozenset[str] = frozenset()   # any-of special-group tags; empty = everyone
    schedule: tuple[Slot, ...] = ()             # empty = no fixed hours

    @property
    def remaining(self) -> int:
        return max(0, self.capacity - self.active)


# Reasons a provider is filtered out, in the order the filters run.


@dataclass
class Candidate:
    provider_id: str
    cost: int
    distance_m: float
    reasons: list[dict] = field(default_factory=list)


@dataclass
class BatchResult:
    assignments: dict[str, str]          # need id -> provider id
    unassigned: list[str]
    total_cost: int
    pair_costs: dict[str, int] = field(default_factory=dict)
