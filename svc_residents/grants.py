"""Exchange grants on svc_residents' own resources: who may read `residents.persons` and `residents.households`,
and which fields clear.

Why the service asks the exchange instead of believing a header
----------------------------------------------------------------
The gateway checks a member system's grant before forwarding and masks the response to it, and it names the
resource in `x-onenet-resource` (stripping any caller-supplied `x-onenet-*`). But it does not tell the service
*which* grant or *which* fields, a user signed in through an app (a department clerk on the portal) is forwarded
with no grant check at all ("the owning service decides"), and a header is only as good as the network path: a
caller that reaches the service directly with a valid token could set it. So the service decides from two things
nobody can forge:

- the consumer, from the bearer token the service verifies itself (the `member` claim of a member system's own
  token; for a `dept_staff` user signed in through an app, the department member `dept-<code>` named by the
  signed `dept:<code>` scope);
- the grant, read from the exchange's grant registry (`GET /exchange/v1/grants?side=owner`) with svc_residents'
  own client-credentials token, as the owner of the resource; the registry is the record of what was approved,
  with scope, expiry and purpose. Answers are cached for `grant_cache_seconds` (the same bound the gateway's
  replicas use to follow a revocation); when the registry cannot be read the read is refused (fail closed:
  503 while it is unreachable, 403 when the service has no credentials to ask it).

`x-onenet-resource` is still required on a grant read (the gateway sets it on every exchange call to the
resource), so a well-behaved caller's read is also in the gateway's message log; it grants nothing by itself.
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

PERSONS_RESOURCE = "residents.persons"
HOUSEHOLDS_RESOURCE = "residents.households"
RESOURCE_HEADER = "x-onenet-resource"
PURPOSE_HEADER = "x-onenet-purpose"
GRANT_ROLES = ("dept_staff", "system")  # departments and member systems read only through grants


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
                 monotonic=time.monotonic) -> None:
        self.client = client
        self.token_provider = token_provider
        self.ttl = ttl_seconds
        self.monotonic = monotonic
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
                          ("居民档案服务未配置数据交换凭证，无法核对授权，不能按授权读取",
                           "svc_residents has no exchange credentials, so no grant can be checked"),
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
                raise _unavailable() from None
            except Exception:  # noqa: BLE001 - e.g. the token endpoint is down
                raise _unavailable() from None
            if resp.status_code != 200:
                raise _unavailable()
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


def _unavailable() -> Problem:
    return Problem(503, "exchange.grants_unavailable",
                   ("暂时无法确认数据共享授权，请稍后重试", "The exchange grants cannot be read now; retry later"),
                   headers={"Retry-After": "5"})


def no_grant(resource: str = PERSONS_RESOURCE) -> Problem:
    return Problem(403, "exchange.no_grant",
                   (f"本单位没有资源 {resource} 的有效授权，请先通过数据交换申请（POST /exchange/v1/grants）",
                    f"No live grant for resource {resource}; apply at POST /exchange/v1/grants"),
                   extra={"resource": resource})


async def grant_for(source: GrantSource | None, principal: Principal, headers, now: datetime,
                    resource: str = PERSONS_RESOURCE) -> GrantInfo:
    """The caller's live grant on `resource`, or 403. Only for departments and member systems; `headers` are the
    call's (the exchange names the resource in `RESOURCE_HEADER`), `source` the app's (`AppGrants`)."""
    if principal.role not in GRANT_ROLES:
        raise no_grant(resource)
    if headers.get(RESOURCE_HEADER) != resource:
        raise Problem(403, "exchange.required",
                      ("部门和成员系统须经数据交换（网关）读取居民档案",
                       "Departments and member systems read resident records through the exchange"),
                      extra={"resource": resource})
    consumers = consumers_of(principal)
    if not consumers:
        raise no_grant(resource)
    if source is None:
        raise _unavailable()
    grants = await source.live_grants(resource, now)
    for c in consumers:
        if c in grants:
            return grants[c]
    raise no_grant(resource)


# what an endpoint takes (`grants: AppGrants`): the exchange's grant registry (svc_residents/clients.py), None if unset
AppGrants = Annotated[GrantSource | None, state("grant_source")]
