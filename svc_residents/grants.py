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

The machinery (the registry client, its cache, who the consumer is) is `common/grants.py`, shared with
svc_services; this module is svc_residents' rule on top of it.
"""
from __future__ import annotations

from datetime import datetime

from common.auth import Principal
from common.errors import Problem
from common.grants import (AppGrants, ExchangeGrants, GrantInfo, GrantSource, StaticGrants, consumers_of,
                           grants_unavailable, live_grant_of)
from common.grants import no_grant as _no_grant

__all__ = ["GRANT_ROLES", "HOUSEHOLDS_RESOURCE", "PERSONS_RESOURCE", "PURPOSE_HEADER", "RESOURCE_HEADER", "AppGrants",
           "ExchangeGrants", "GrantInfo", "GrantSource", "StaticGrants", "consumers_of", "grant_for", "no_grant"]

PERSONS_RESOURCE = "residents.persons"
HOUSEHOLDS_RESOURCE = "residents.households"
RESOURCE_HEADER = "x-onenet-resource"
PURPOSE_HEADER = "x-onenet-purpose"
GRANT_ROLES = ("dept_staff", "system")  # departments and member systems read only through grants


def no_grant(resource: str = PERSONS_RESOURCE) -> Problem:
    return _no_grant(resource)


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
    if not consumers_of(principal):
        raise no_grant(resource)
    if source is None:
        raise grants_unavailable()
    grant = await live_grant_of(source, principal, resource, now)
    if grant is None:
        raise no_grant(resource)
    return grant
