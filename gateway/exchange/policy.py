"""The forwarder's view of the exchange, all in memory: which catalogued resource a path belongs to, whether the
calling member holds a live grant for it, and which response fields to mask or remove.

Who is checked:
- department-data routes (`/departments/{code}/v1/...`): every caller except the owning member; a route with no
  catalogue entry is refused (nothing can be granted for it);
- any other catalogued resource: calls made by member systems with their own (client-credentials) token, except
  the owner. Users signed in through the platform's own apps are governed there by role and object-level checks
  in the owning service, which masks by role itself.

Outside the grant's field scope the one masking rule applies (`common.masking`): sensitive personal fields are
removed, personal fields masked, other core / important fields removed, general non-personal fields passed. Fields the catalogue does not declare
pass through untouched: the catalogue is where protection is declared, and it declares every response field a
service's OpenAPI shows (one nobody annotated is declared personal / important, so masked: `derive.UNREVIEWED`).

The grant cache is updated at once on this replica when a grant is approved or revoked, and re-read from the
database every couple of seconds so other replicas follow (the same rule as member revocation, ADR 2).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common import masking
from common.masking import MASK, REMOVE, apply_actions
from common.errors import Problem
from gateway.exchange.xroad_protocol import xroad_code

__all__ = ["MASK", "REMOVE", "ExchangePolicy", "GrantView", "ResourceView", "apply_actions", "field_actions",
           "filter_body"]


@dataclass(frozen=True)
class ResourceView:
    code: str
    owner: str
    name: str
    sharing_class: str
    service: str
    path_prefix: str
    fields: tuple[dict, ...]
    xroad_member_class: str = "GOV"
    xroad_subsystem: str = ""
    xroad_service: str = ""
    methods: tuple[str, ...] = ()
    description: str = ""

    @classmethod
    def of(cls, r: Any) -> "ResourceView":
        # the X-Road address in the protocol's identifier characters (gateway.exchange.xroad_protocol)
        return cls(code=r.code, owner=r.owner, name=r.name, sharing_class=r.sharing_class, service=r.service,
                   path_prefix=r.path_prefix, fields=tuple(r.fields or ()), methods=tuple(r.methods or ()),
                   xroad_member_class=xroad_code(r.xroad_member_class), xroad_subsystem=xroad_code(r.xroad_subsystem),
                   xroad_service=xroad_code(r.xroad_service), description=getattr(r, "description", "") or "")

    @property
    def xroad_member_code(self) -> str:
        """The owner's member code on the X-Road face."""
        return xroad_code(self.owner)

    @property
    def is_department(self) -> bool:
        return self.path_prefix.startswith("/departments/")


@dataclass(frozen=True)
class GrantView:
    id: str
    resource: str
    consumer: str
    fields: frozenset[str] | None  # None: every field
    expires_at: datetime | None
    actions: tuple[tuple[tuple[str, ...], str, str | None], ...] = field(default=())  # (path parts, action, mask)

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


def field_actions(resource: ResourceView, granted: frozenset[str] | None) -> tuple:
    """What to do with each declared field that lies outside the granted scope (`common.masking`)."""
    return masking.field_actions(resource.fields, granted)


def filter_body(body: bytes, content_type: str, actions: tuple) -> bytes:
    if not actions or not body or "json" not in content_type:
        return body
    try:
        doc = json.loads(body)
    except ValueError:
        return b""  # a body we cannot check is not passed on
    return json.dumps(apply_actions(doc, actions), ensure_ascii=False, separators=(",", ":")).encode()


class ExchangePolicy:
    def __init__(self) -> None:
        self.resources: dict[str, ResourceView] = {}
        self._by_prefix: list[tuple[str, ResourceView]] = []
        self.grants: dict[tuple[str, str], GrantView] = {}
        # bumped by every local change, so a periodic reload that read the database before the change
        # does not undo it (a just-revoked grant must not come back, not even for a refresh interval)
        self.generation = 0

    # ---- loading -------------------------------------------------------------------------------------------
    def load_resources(self, rows) -> None:
        resources = {r.code: ResourceView.of(r) for r in rows}
        self.resources = resources
        self._by_prefix = sorted(((r.path_prefix, r) for r in resources.values()), key=lambda t: -len(t[0]))
        # field scopes may have changed: recompute the actions of every cached grant
        self.grants = {k: self._view(g.id, g.resource, g.consumer, g.fields, g.expires_at)
                       for k, g in self.grants.items() if g.resource in resources}

    def load_grants(self, rows) -> None:
        grants = {}
        for g in rows:
            view = self._view(g.id, g.resource, g.consumer, g.fields, g.expires_at)
            if view is not None:
                grants[(g.consumer, g.resource)] = view
        self.grants = grants

    def _view(self, id_, resource, consumer, fields, expires_at) -> GrantView | None:
        res = self.resources.get(resource)
        if res is None:
            return None
        scope = None if fields is None else frozenset(fields)
        return GrantView(id=id_, resource=resource, consumer=consumer, fields=scope, expires_at=expires_at,
                         actions=field_actions(res, scope))

    def put_grant(self, g) -> None:
        view = self._view(g.id, g.resource, g.consumer, g.fields, g.expires_at)
        if view is not None:
            self.grants[(g.consumer, g.resource)] = view
        self.generation += 1

    def drop_grant(self, consumer: str, resource: str, grant_id: str) -> None:
        g = self.grants.get((consumer, resource))
        if g is not None and g.id == grant_id:
            del self.grants[(consumer, resource)]
        self.generation += 1

    # ---- the hot path ---------------------------------------------------------------------------------------
    def resolve(self, path: str) -> ResourceView | None:
        for prefix, res in self._by_prefix:
            if path.startswith(prefix):
                return res
        return None

    def check(self, *, member: str, user: str, path: str, now: datetime) -> tuple[ResourceView | None,
                                                                                   GrantView | None]:
        """The resource the call touches and the grant that allows it; raises 403 when no live grant."""
        res = self.resolve(path)
        dept = path.startswith("/departments/") and not path.startswith("/departments/v1")
        if res is None:
            if dept:
                raise Problem(403, "exchange.not_catalogued", ("该部门数据接口未列入资源目录，不能调用",
                                                               "This department route is not in the catalogue"))
            return None, None
        if member == res.owner:
            return res, None
        if not dept and user != member:
            return res, None  # a user through a platform app: the owning service decides
        if res.sharing_class == "not_shared":
            raise Problem(403, "exchange.not_shared", (f"资源“{res.name}”不予共享", f"Resource {res.code} is not shared"),
                          extra={"resource": res.code})
        grant = self.grants.get((member, res.code))
        if grant is None or not grant.live(now):
            raise Problem(403, "exchange.no_grant",
                          (f"本单位没有资源“{res.name}”的有效授权，请先申请（POST /exchange/v1/grants）",
                           f"No live grant for resource {res.code}; apply at POST /exchange/v1/grants"),
                          extra={"resource": res.code})
        return res, grant
