"""Open311 GeoReport v2 on top of the catalogue and the requests: mappings and queries.

The reads are public, so a request is shown with GeoReport's own fields only, never who asked or who acted:
- no person ids, names, phone numbers, submitter or proxy accounts, assignee identities, notes;
- mobile numbers and resident ID numbers typed into a description or address are masked;
- a request made for a person (a resident's own ask) shows no address and a location rounded to ~100 m;
- requests of the categories in `open311_hidden_categories` (health, disability, counselling by default: PIPL
  sensitive personal information) are not listed at all, and reading one by id answers 404.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion
from svc_services.codes import CATEGORIES, LEVEL_ZH
from svc_services.requests.lifecycle import ACTION_ZH, STATE_ZH
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.settings import ServicesSettings

SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
# GeoReport has two statuses; the detailed internal state goes to status_notes.
CLOSED_STATES = frozenset({"resolved", "rated", "closed", "rejected", "cancelled", "merged"})
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)

_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[0-9Xx])(?![0-9A-Za-z])")


def scrub(text: str | None) -> str | None:
    """Mask mobile numbers (138****5678) and resident ID numbers (110101********1234) in free text."""
    if not text:
        return text
    text = _ID_NUMBER.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def is_public(req: ServiceRequest, settings: ServicesSettings) -> bool:
    return req.category not in settings.open311_hidden_categories


def open_or_closed(state: str) -> str:
    return "closed" if state in CLOSED_STATES else "open"


def status_notes(req: ServiceRequest) -> str:
    notes = f"{STATE_ZH.get(req.state, req.state)}（{req.state}）"
    if req.state == "merged" and req.merged_into:
        notes += f"，已合并至 {req.merged_into}"
    if req.escalation_level != "grid":
        notes += f"，已升级至{LEVEL_ZH[req.escalation_level]}（{req.escalation_level}）"
    if req.overdue and req.state not in CLOSED_STATES:
        notes += "，已超时（overdue）"
    return notes


def service_out(item: CatalogueItem, v: CatalogueItemVersion) -> dict[str, Any]:
    return {"service_code": item.code, "service_name": v.name, "description": v.description or v.name,
            "metadata": bool(v.attributes), "type": "realtime", "keywords": ",".join(v.keywords or []),
            "group": CATEGORIES.get(v.category, (v.category,))[0]}


def definition_out(v: CatalogueItemVersion) -> dict[str, Any]:
    attrs = []
    for i, a in enumerate(v.attributes):
        attrs.append({"variable": a.get("variable", True), "code": a["code"], "datatype": a["datatype"],
                      "required": bool(a.get("required")), "datatype_description": a.get("datatype_description") or "",
                      "order": a.get("order") or i + 1, "description": a["description"],
                      "values": [{"key": x["key"], "name": x["name"]} for x in a.get("values") or []]})
    return {"service_code": v.item_code, "attributes": attrs}


def timeline_out(entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    """Roles and actions only: no actor, no acting-for person, no notes, no assignee identity."""
    return [{"seq": t.seq, "action": t.action, "action_name": ACTION_ZH.get(t.action, t.action),
             "from_state": t.from_state, "to_state": t.to_state, "role": t.role, "datetime": t.occurred_at}
            for t in entries]


def request_out(req: ServiceRequest, names: dict[str, str], timeline: list[TimelineEntry] | None) -> dict[str, Any]:
    personal = req.person_id is not None
    lat, long = req.lat, req.long
    if personal and lat is not None:
        lat, long = round(lat, 3), round(long, 3)
    out: dict[str, Any] = {
        "service_request_id": req.id, "status": open_or_closed(req.state), "status_notes": status_notes(req),
        "service_name": names.get(req.item_code, req.item_code), "service_code": req.item_code,
        "description": scrub(req.description), "agency_responsible": req.department, "service_notice": "",
        "requested_datetime": req.created_at, "updated_datetime": req.updated_at,
        "expected_datetime": req.resolution_due_at or req.response_due_at,
        "address": None if personal else scrub(req.address), "address_id": req.grid, "zipcode": None,
        "lat": lat, "long": long, "media_url": req.media_url,
    }
    if timeline is not None:
        out["extended_attributes"] = {"state": req.state, "state_name": STATE_ZH.get(req.state, req.state),
                                      "escalation_level": req.escalation_level, "timeline": timeline_out(timeline)}
    return out


async def item_names(session: AsyncSession, reqs: list[ServiceRequest]) -> dict[str, str]:
    keys = {(r.item_code, r.item_version) for r in reqs}
    if not keys:
        return {}
    rows = (await session.execute(select(CatalogueItemVersion.item_code, CatalogueItemVersion.version,
                                         CatalogueItemVersion.name)
                                  .where(CatalogueItemVersion.item_code.in_({k[0] for k in keys})))).all()
    latest: dict[str, tuple[int, str]] = {}
    for code, version, name in rows:  # the name of the version each request used; the latest one otherwise
        if code not in latest or version > latest[code][0]:
            latest[code] = (version, name)
    by_version = {(c, v): n for c, v, n in rows}
    return {r.item_code: by_version.get((r.item_code, r.item_version), latest.get(r.item_code, ("", ""))[1])
            for r in reqs}


async def timelines(session: AsyncSession, ids: list[str]) -> dict[str, list[TimelineEntry]]:
    out: dict[str, list[TimelineEntry]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = (await session.execute(select(TimelineEntry).where(TimelineEntry.request_id.in_(ids))
                                  .order_by(TimelineEntry.request_id, TimelineEntry.seq))).scalars()
    for t in rows:
        out[t.request_id].append(t)
    return out


async def services(session: AsyncSession) -> list[tuple[CatalogueItem, CatalogueItemVersion]]:
    """Active items that can be requested through Open311 (the `api` channel)."""
    rows = (await session.execute(
        select(CatalogueItem, CatalogueItemVersion)
        .join(CatalogueItemVersion, (CatalogueItemVersion.item_code == CatalogueItem.code)
              & (CatalogueItemVersion.version == CatalogueItem.current_version))
        .where(CatalogueItem.active.is_(True)).order_by(CatalogueItem.code))).all()
    return [(i, v) for i, v in rows if "api" in (v.channels or [])]


async def find_requests(session: AsyncSession, settings: ServicesSettings, *, ids: list[str] | None,
                        service_codes: list[str] | None, start: datetime | None, end: datetime | None,
                        statuses: list[str] | None, now: datetime) -> list[ServiceRequest]:
    R = ServiceRequest
    stmt = select(R).where(R.category.not_in(settings.open311_hidden_categories or ["-"]))
    if ids:
        stmt = stmt.where(R.id.in_(ids))
    else:
        if service_codes:
            stmt = stmt.where(R.item_code.in_(service_codes))
        if start is None and end is None:
            start = now - DEFAULT_WINDOW
        elif start is None:
            start = end - DEFAULT_WINDOW
        stmt = stmt.where(R.created_at >= start)
        if end is not None:
            stmt = stmt.where(R.created_at <= end)
        if statuses and set(statuses) != {"open", "closed"}:
            closed = R.state.in_(sorted(CLOSED_STATES))
            stmt = stmt.where(closed if statuses == ["closed"] else ~closed)
    stmt = stmt.order_by(R.created_at.desc(), R.id.desc()).limit(MAX_RESULTS)
    return list((await session.execute(stmt)).scalars())
