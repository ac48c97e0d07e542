"""`POST /services/v1/requests`: THE endpoint function (`submit_request`) that every entry calls (the FastAPI
route, Open311's POST, the demo seed), and the checks of a submission (`prepare`), which make the rows to write.

The checks run outside any transaction, with the item's current version and the grid read through process caches
(`IntakeLookups`): an item version is immutable and a grid is never removed, so a cached one is never wrong;
whether the cached version is still the item's *current* one (and the item still active) is checked again by the
writer when it writes, and a submission that finds it changed is checked again here with the item read afresh.
The rows are written by the one writer, `group_commit.IntakeWriter` (a lone submission is a batch of one).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, make_dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response
from sqlalchemy import and_, select

from common import acting
from common.auth import Principal
from common.clock import Clock
from common.db import Database
from common.errors import Problem, invalid
from common.idempotency import check_key, request_fingerprint
from common.ids import new_id
from common.outbox import event_row
from svc_services.emergency import feed as emergency_feed
from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion
from svc_services.grids.models import ServiceGrid
from svc_services.grids.service import located_grids, nearest_of
from svc_services.requesters.models import RequesterProfile
from svc_services.requesters.service import profile_cache, requester_facts
from svc_services.requests.access import PLACE_STAFF
from svc_services.requests.attributes import validate_attributes
from svc_services.requests.lifecycle import OWNER
from svc_services.requests.models import ServiceRequest
from svc_services.requests.payloads import event_data
from svc_services.requests.schemas import RequestCreate
from svc_services.settings import ServicesSettings

if TYPE_CHECKING:
    from svc_services.requests.group_commit import IntakeWriter

SUBMIT_ROLES = ("resident", "proxy", "grid_worker", "community_staff", "street_staff", "dept_staff", "ops", "system")
PATH = "/services/v1/requests"
MAX_CACHED_GRIDS = 100_000
GRID_CENTRES_TTL = 5.0


async def submit_request(intake: IntakeWriter, principal: Principal, body: RequestCreate, clock: Clock, *,
                         key: str | None, path: str = PATH, request_id: str | None = None) -> Response:
    """A submission checked, written (with its timeline entry, outbox event and, under an Idempotency-Key, the
    stored response) and answered 201 with `RequestOut`; a key sent again replays its first answer. `path`: the
    entry's own, which the key's fingerprint names; `request_id`: the seed's fixed ids. Every submission path
    passes here (the route, its direct path, Open311, alarms), so a helper's act is checked here (common.acting)."""
    acting.check(principal, "requests.submit")
    check_key(key)
    return await intake.submit(principal, body, clock, key, request_fingerprint("POST", path, body),
                               request_id=request_id)


class IntakeLookups:
    """What intake reads besides the body, through process caches: item versions (immutable) by code, grids
    (never removed) by code. Misses are read in a short read-only session; grid centres for lat/long are a
    short-lived snapshot (dropped at once when this process registers or moves a grid; another replica's
    change is seen within GRID_CENTRES_TTL seconds)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.items: dict[str, CatalogueItemVersion] = {}
        self.grids: dict[str, ServiceGrid] = {}
        self._centres: list[ServiceGrid] | None = None
        self._centres_at = 0.0

    async def item(self, code: str) -> CatalogueItemVersion | None:
        """The item's current version (an unknown or withdrawn item finds none)."""
        hit = self.items.get(code)
        if hit is not None:
            return hit
        Item, Version = CatalogueItem, CatalogueItemVersion
        async with self.db.session() as session:
            iv = (await session.execute(
                select(Version).join(Item, and_(Item.code == Version.item_code,
                                                Item.current_version == Version.version))
                .where(Item.code == code, Item.active.is_(True)))).scalar_one_or_none()
        if iv is not None:
            self.items[code] = iv
        return iv

    def forget_item(self, code: str) -> None:
        self.items.pop(code, None)

    async def requester(self, person_id: str) -> RequesterProfile | None:
        """The requester's profile replica (birth date, group tags) for the submission event; never a call to
        svc_residents (read through `ProfileCache`)."""
        return await profile_cache(self.db).get(person_id)

    async def grid(self, code: str) -> ServiceGrid | None:
        hit = self.grids.get(code)
        if hit is not None:
            return hit
        async with self.db.session() as session:
            grid = await session.get(ServiceGrid, code)
        if grid is not None and len(self.grids) < MAX_CACHED_GRIDS:
            self.grids[code] = grid
        return grid

    async def nearest(self, lat: float, long: float, radius_m: float) -> ServiceGrid | None:
        now = time.monotonic()
        if self._centres is None or now - self._centres_at > GRID_CENTRES_TTL:
            async with self.db.session() as session:
                self._centres = await located_grids(session)
            self._centres_at = now
        return nearest_of(self._centres, lat, long, radius_m)

    def forget_centres(self) -> None:
        self._centres = None


async def _locate(lookups: IntakeLookups, principal: Principal, body: RequestCreate,
                  settings: ServicesSettings) -> ServiceGrid:
    loc = body.location
    if (loc.lat is None) != (loc.long is None):
        raise invalid("location", "location.incomplete", "经纬度须同时提供", "Give both lat and long")
    if loc.grid:
        grid = await lookups.grid(loc.grid)
        if grid is None:
            raise invalid("location.grid", "location.grid_unknown", "网格编码不存在", "Unknown grid code")
        return grid
    if loc.lat is not None:
        grid = await lookups.nearest(loc.lat, loc.long, settings.grid_match_radius_m)
        if grid is None:
            raise invalid("location", "location.outside_grids", "该位置不在任何网格范围内",
                          "The location is outside every grid")
        return grid
    own = principal.scope_values("grid")
    if principal.role == "grid_worker" and len(own) == 1:
        grid = await lookups.grid(own[0])
        if grid is not None:
            return grid
    raise invalid("location.grid", "location.grid_required", "请提供网格编码或经纬度",
                  "Give a grid code or a lat/long")


_REQUEST_COLUMNS = tuple(c.key for c in ServiceRequest.__table__.columns)
# A request about to be written: `ServiceRequest`'s columns as plain attributes, what `to_out`, `event_data`,
# `can_see` and `duplicates` read (profiled: building an ORM instance was half of a submission's checks)
NewRequest = make_dataclass("NewRequest", [(key, Any) for key in _REQUEST_COLUMNS], slots=True)


@dataclass(slots=True)
class Prepared:
    """A checked submission not yet written: the request and its row's values, its first timeline entry and its
    outbox event (rows)."""
    req: Any  # a NewRequest
    values: dict[str, Any]
    timeline: dict[str, Any]
    event: dict[str, Any]
    feeds: tuple[dict[str, Any], ...] = ()  # more outbox rows for subscriber services (feeds, ADR 0007)


async def prepare(lookups: IntakeLookups, principal: Principal, body: RequestCreate, clock: Clock,
                  settings: ServicesSettings, *, request_id: str | None = None) -> Prepared:
    """Every check of a submission and the rows it makes; nothing is written (`group_commit` writes them)."""
    role = principal.role
    if role not in SUBMIT_ROLES:
        raise Problem(403, "forbidden", (f"当前角色（{role}）不能提交诉求", f"Role {role} may not submit requests"))
    iv = await lookups.item(body.item_code)
    if iv is None:
        raise invalid("item_code", "item.unknown", "事项不存在或已停用", "Unknown or withdrawn catalogue item")
    if body.channel not in iv.channels:
        raise invalid("channel", "channel.not_offered", "该事项不支持此渠道办理", "This item is not offered on this channel")
    if body.channel == "grid_patrol" and role not in ("grid_worker", "ops"):
        raise invalid("channel", "channel.role", "网格巡查渠道仅限网格员", "grid_patrol is for grid workers")
    if body.channel == "iot" and role not in ("system", "ops"):
        raise invalid("channel", "channel.role", "物联感知渠道仅限系统接入", "iot is for member systems")
    # a kiosk session (ID-card sign-in at a kiosk, gateway/accounts/kiosk.py) submits from that kiosk only
    kiosk_device = principal.claims.get("kiosk_device")
    if kiosk_device and body.channel != "kiosk":
        raise invalid("channel", "channel.kiosk_session", "一体机上的登录只能以一体机渠道（kiosk）提交",
                      "A kiosk session submits on the kiosk channel")

    # who the request is for, and who acted (代办)
    proxy_user = None
    if role == "resident":
        person_id = principal.person_id
        if person_id is None or (body.person_id and body.person_id != person_id):
            raise Problem(403, "forbidden", ("居民只能为本人提交诉求", "Residents submit for themselves only"))
    elif role == "proxy":
        person_id = principal.acting_for
        if person_id is None or (body.person_id and body.person_id != person_id):
            raise Problem(403, "forbidden", ("代办员只能为其代办的居民提交诉求",
                                             "A proxy submits only for the person it acts for"))
        proxy_user = principal.caller
    else:
        person_id = body.person_id
        proxy_user = principal.caller if person_id else None
    if role in OWNER and body.priority not in (None, "normal"):
        raise invalid("priority", "priority.forbidden", "居民提交时不能指定优先级", "Residents cannot set priority")

    attributes = validate_attributes(iv.attributes, body.attributes)
    grid = await _locate(lookups, principal, body, settings)
    if role in PLACE_STAFF and not principal.covers_place(grid.code):
        raise Problem(403, "forbidden", ("只能登记本辖区内的诉求", "You may only register requests in your scope"))

    if iv.emergency:
        priority = "emergency"
    elif body.priority:
        priority = body.priority
    else:
        priority = "urgent" if role == "proxy" else "normal"

    now = clock.now()
    values = dict.fromkeys(_REQUEST_COLUMNS)
    values.update(
        id=request_id or new_id(), item_code=iv.item_code, item_version=iv.version, category=iv.category,
        department=iv.department,
        channel=body.channel, person_id=person_id, submitted_by=principal.caller, submitted_role=role,
        proxy_user=proxy_user, description=body.description, attributes=attributes,
        address=body.location.address, media_url=body.media_url, lat=body.location.lat, long=body.location.long,
        grid=grid.code, community=grid.community_code, street=grid.code[:9], priority=priority, state="submitted",
        version=1, escalation_level="grid", overdue=False, created_at=now, updated_at=now)
    if priority == "emergency":
        values.update(response_due_at=now + timedelta(seconds=settings.emergency_ack_seconds),
                   start_due_at=now + timedelta(seconds=settings.emergency_start_seconds))
    req = NewRequest(**values)
    timeline = {"id": new_id(), "request_id": req.id, "seq": 1, "action": "submit", "from_state": None,
                "to_state": "submitted", "actor": principal.caller, "role": role,
                "acting_for": person_id if proxy_user else None, "note": None,
                "data": {"channel": body.channel, "item_version": iv.version,
                         # the kiosk the resident stood at: its reader as the gateway registered it, its member
                         **({"kiosk_device": kiosk_device, "kiosk": principal.member} if kiosk_device else {})},
                "occurred_at": now}
    # Who the request is for, as the indicators need it (65+ usage, special-group filters): the person id, age
    # and group tags from svc_services' own profile replica, not a call per submission (see requesters/service.py).
    requester = requester_facts(person_id, await lookups.requester(person_id) if person_id else None, now)
    event = event_row("request.submitted", subject=req.id, community=req.community, grid=req.grid,
                      data=event_data(req, "submit", None, principal, now, requester), now=now)
    # an emergency goes to svc_residents' call-out too (svc_services.emergency)
    feeds = (emergency_feed.submitted_row(req, now),) if priority == "emergency" else ()
    return Prepared(req, values, timeline, event, feeds)
