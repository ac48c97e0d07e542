"""Which outbox feeds go to which service: the one table the launcher reads, and the compose file and the
Kubernetes manifests are checked against (tests/deploy/test_manifests.py).

A service's outbox rows go to svc_metrics' event ingest unless their type starts with one of the prefixes below;
those go to the subscriber's path instead, signed with the subscriber's gateway assertion key (ADR 0013).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feed:
    source: str       # the service whose outbox holds the rows
    prefix: str       # event types starting with it
    subscriber: str   # the service they are delivered to
    path: str         # where on the subscriber
    why: str          # the ADR or README that says what the feed is for


FEEDS = (
    # residents' records kept as replicas where requests and matching need them
    Feed("svc_residents", "requester_profile.", "svc_services", "/services/v1/requester_profiles", "ADR 0007"),
    Feed("svc_residents", "person_place.", "svc_matching", "/matching/v1/person_places", "ADR 0014"),
    Feed("svc_residents", "elector.", "svc_services", "/services/v1/deliberation/electors", "ADR 0018"),
    # the emergency path: alarms to the request intake, the request to the call-out, its attempts to the timeline
    Feed("svc_residents", "alarm.", "svc_services", "/services/v1/device_alarms", "ADR 0022"),
    Feed("svc_services", "emergency.", "svc_residents", "/residents/v1/emergencies", "ADR 0021"),
    Feed("svc_residents", "callout.", "svc_services", "/services/v1/emergency_log", "ADR 0021"),
    # the steps people are told about, to the notification engine
    Feed("svc_services", "notice.", "svc_residents", "/residents/v1/notices", "ADR 0017"),
    Feed("svc_matching", "notice.", "svc_residents", "/residents/v1/notices", "ADR 0017"),
    Feed("svc_metrics", "notice.", "svc_residents", "/residents/v1/notices", "ADR 0017"),
    # a request's appointment, and the needs surveys found
    Feed("svc_matching", "appointment.", "svc_services", "/services/v1/request_appointments", "ADR 0020"),
    Feed("svc_metrics", "survey_need.", "svc_matching", "/matching/v1/survey_needs", "ADR 0019"),
)


def feeds_of(source: str) -> tuple[Feed, ...]:
    return tuple(f for f in FEEDS if f.source == source)
