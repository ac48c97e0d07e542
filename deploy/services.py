"""The platform's processes: which package, which port, which URL prefix."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str          # package and process name
    port: int
    prefix: str        # first path segment the gateway routes on ("" for the gateway itself)
    has_database: bool = True
    http: str = "httptools"  # uvicorn's --http


# The peers whose X-Forwarded-For uvicorn takes as the client's address (its --forwarded-allow-ips; its
# ProxyHeadersMiddleware sets request.client from it, which the gateway's per-address sign-in and SMS limits read):
# loopback only, where the gateway's edge connects from (its pod, compose's shared network namespace, `onenet up`).
# The edge overwrites X-Forwarded-For with the address it saw; a client reaching a process from anywhere else is
# its connection's address, whatever X-Forwarded-For it sends. Pinned here, not taken from FORWARDED_ALLOW_IPS.
FORWARDED_ALLOW_IPS = "127.0.0.1,::1"

GATEWAY = ServiceSpec("gateway", 8000, "")
SERVICES = (
    ServiceSpec("svc_services", 8001, "services"),
    ServiceSpec("svc_residents", 8002, "residents"),
    ServiceSpec("svc_matching", 8003, "matching"),
    ServiceSpec("svc_metrics", 8004, "metrics"),
)
EMULATORS = ServiceSpec("departments", 8005, "departments", has_database=False)
ALL = (GATEWAY, *SERVICES, EMULATORS)
WITH_DATABASE = tuple(s for s in ALL if s.has_database)


def by_name(name: str) -> ServiceSpec:
    for spec in ALL:
        if spec.name == name:
            return spec
    raise KeyError(name)
