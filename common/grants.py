"""Exchange grants checked where the data is: which member may read one of this service's catalogued resources.

A service that owns a resource decides a member system's read from two things nobody can forge (svc_residents/
grants.py explains why a header from the gateway is not enough):

- the consumer, from the bearer token the service verifies itself (`consumers_of`: the `member` claim of a member
  system's own token; for a `dept_staff` user signed in through an app, the department member `dept-<code>`
  named by the signed `dept:<code>` scope);
- the grant, read from the exchange's grant registry (`GET /exchange/v1/grants?side=owner`) with the service's
  own client-credentials token, as the owner of the resource (`ExchangeGrants`); the registry is the record of
  what was approved, with scope, expiry and purpose. Answers are cached for the service's `grant_cache_seconds`
  (the bound the gateway's replicas use to follow a revocation); when the registry cannot be read the read is
  refused (fail closed: 503 while it is unreachable, 403 when the service has no credentials to ask it).

Used by svc_residents (`residents.persons`, `residents.households`) and svc_services (`services.materials`,
`services.request_photos`: a department system's download of a request's files).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol

from common.auth import Principal
from common.deps import state
from common.errors import Problem
from common.http_client import ServiceClient, UpstreamError


@dataclass(frozen=True)
class GrantInfo:
    id: str
    resource: str
    consumer: str
    fields: frozenset[str] | None  # None: every field of the resource
    purpose: str
    expires_at: datetime | None = None

    def covers(self, field: str) -> bool:
        return self.fields is None or field in self.fields


class GrantSource(Protocol):
    async def live_grants(self, resource: str, now: datetime) -> dict[str, GrantInfo]: ...


def _unexpired(grants: dict[str, GrantInfo], now: datetime) -> dict[str, GrantInfo]:
    return {c: g for c, g in grants.items() if g.expires_at is None or g.expires_at > now}


def consumers_of(principal: Principal) -> list[str]:
    """The exchange members whose grants this caller may use (from the verified token only)."""
    if principal.user == principal.member:  # a member system's own client-credentials token
        return [principal.member]
    if principal.role == "dept_staff":  # a department clerk signed in through an app: their department's grants
        return [f"dept-{d}" for d in principal.scope_values("dept")]
    return []


class StaticGrants:
    """Grants given in code (tests, air-gapped demos)."""

    def __init__(self, grants: list[GrantInfo] | None = None) -> None:
        self.grants = list(grants or [])

    async def live_grants(self, resource: str, now: datetime) -> dict[str, GrantInfo]:
        return _unexpired({g.consumer: g for g in self.grants if g.resource == resource}, now)


class ExchangeGrants:
    """The live approved grants on a resource, read from the gateway's exchange as the resource's owner.

    The cache's age is measured on `monotonic` (a duration, not business time); a cached grant still stops at
    its `expires_at` on the app's clock, not up to a TTL later."""

    def __init__(self, client: ServiceClient, token_provider, *, ttl_seconds: float = 2.0,
                 monotonic=time.monotonic, service: tuple[str, str] = ("本服务", "This service")) -> None:
        self.client = client
        self.token_provider = token_provider
        self.ttl = ttl_seconds
        self.monotonic = monotonic
        self.service = service
        self._cache: dict[str, tuple[float, dict[str, GrantInfo]]] = {}

    async def live_grants(self, resource: str, now: datetime) -> dict[str, GrantInfo]:
        hit = self._cache.get(resource)
        if hit is not None and self.monotonic() - hit[0] < self.ttl:
            return _unexpired(hit[1], now)
        grants = await self._fetch(resource)
        self._cache[resource] = (self.monotonic(), grants)
        return _unexpired(grants, now)

    def invalidate(self) -> None:
        self._cache.clear()

    async def _fetch(self, resource: str) -> dict[str, GrantInfo]:
        if self.token_provider is None:  # no client credentials: grants cannot be checked, so none applies
            raise Problem(403, "exchange.grants_unconfigured",
                          (f"{self.service[0]}未配置数据交换凭证，无法核对授权，不能按授权读取",
                           f"{self.service[1]} has no exchange credentials, so no grant can be checked"),
                          extra={"resource": resource})
        out: dict[str, GrantInfo] = {}
        cursor = None
        for _ in range(50):  # ≤ 10,000 grants on one resource
            params = {"side": "owner", "status": "approved", "resource": resource, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            try:
                token = await self.token_provider()
                resp = await self.client.get("/exchange/v1/grants", params=params,
                                             headers={"Authorization": f"Bearer {token}"},
                                             forward_caller_token=False)
            except UpstreamError:
                raise grants_unavailable() from None
            except Exception:  # noqa: BLE001 - e.g. the token endpoint is down
                raise grants_unavailable() from None
            if resp.status_code != 200:
                raise grants_unavailable()
            body = resp.json()
            for g in body.get("items", []):
                if not g.get("live") or g.get("resource") != resource:
                    continue
                fields = g.get("fields")
                out[g["consumer"]] = GrantInfo(
                    id=g["id"], resource=resource, consumer=g["consumer"],
                    fields=None if fields is None else frozenset(fields), purpose=g.get("purpose") or "",
                    expires_at=datetime.fromisoformat(g["expires_at"]) if g.get("expires_at") else None)
            cursor = body.get("next_cursor")
            if not cursor:
                break
        return out


def grants_unavailable() -> Problem:
    return Problem(503, "exchange.grants_unavailable",
                   ("暂时无法确认数据共享授权，请稍后重试", "The exchange grants cannot be read now; retry later"),
                   headers={"Retry-After": "5"})


def no_grant(resource: str) -> Problem:
    return Problem(403, "exchange.no_grant",
                   (f"本单位没有资源 {resource} 的有效授权，请先通过数据交换申请（POST /exchange/v1/grants）",
                    f"No live grant for resource {resource}; apply at POST /exchange/v1/grants"),
                   extra={"resource": resource})


async def live_grant_of(source: GrantSource | None, principal: Principal, resource: str,
                        now: datetime) -> GrantInfo | None:
    """The caller's live grant on `resource` (the first of its consumers holding one), or None; a registry that
    cannot be read raises (503 / 403), never answers None."""
    consumers = consumers_of(principal)
    if not consumers:
        return None
    if source is None:
        raise grants_unavailable()
    grants = await source.live_grants(resource, now)
    return next((grants[c] for c in consumers if c in grants), None)


# what an endpoint takes (`grants: AppGrants`): the app's grant registry (`app.state.grant_source`), None if unset
AppGrants = Annotated[GrantSource | None, state("grant_source")]
