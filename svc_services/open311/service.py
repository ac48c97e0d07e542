"""Open311 GeoReport v2 on top of the catalogue and the requests: mappings and queries.

The reads are public, so a request is shown with GeoReport's own fields only, never who asked or who acted:
- no person ids, names, phone numbers, submitter or proxy accounts, assignee identities, notes;
- a description is shown only once staff published it (`RequestPublication`: names and home addresses typed in
  free text are for a person to find, not a pattern), never for an item marked `personal`; until then it is null;
- mobile numbers and resident ID numbers in a published description or an address are masked after normalising
  what people type (full-width digits, `+86`, spaces and hyphens inside the number: `scrub`);
- a request made for a person (a resident's own ask) or of a personal item shows no address and a location
  rounded to ~100 m;
- requests of the categories in `open311_hidden_categories` (health, disability, counselling by default: PIPL
  sensitive personal information) are not listed at all, and reading one by id answers 404.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_services.attachments.models import Attachment
from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion
from svc_services.codes import CATEGORIES, LEVEL_ZH
from svc_services.open311.models import RequestPublication
from svc_services.requests.lifecycle import ACTION_ZH, STATE_ZH
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.settings import ServicesSettings

SPEC_URL = "http://wiki.open311.org/GeoReport_v2"
# GeoReport has two statuses; the detailed internal state goes to status_notes.
CLOSED_STATES = frozenset({"resolved", "rated", "closed", "rejected", "cancelled", "merged"})
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)

# A number as people type it: digits with up to two separators between them (spaces, hyphens and dashes, dots,
# slashes, brackets), a leading + and an ID number's closing X. Matched on NFKC text, where full-width forms
# (１３８, ＋, －, the ideographic space) are ASCII.
_SEP = r"[\s\-\u2010-\u2015\u2212\u30fc.·/()\[\]_]"
_TYPED_NUMBER = re.compile(rf"\+?\d(?:{_SEP}{{0,2}}\d)*(?:{_SEP}{{0,2}}[Xx])?")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_ID_NUMBER = re.compile(r"\d{17}[\dX]")
# Fewer digits than a mobile number do not identify anyone (a room, a date, a price); more, not recognised as
# one number (two phones run together, a landline with its area code), are masked whole.
_IDENTIFYING_DIGITS = 11


def _normalised(text: str) -> tuple[str, list[int]]:
    """NFKC character by character, with the position in `text` each output character came from."""
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        norm = unicodedata.normalize("NFKC", ch)
        out.append(norm)
        origin.extend([i] * len(norm))
    return "".join(out), origin


def _mask_number(typed: str) -> str | None:
    """The masked form of a typed number (138****5678, 110101********1234), None when it identifies no one."""
    digits = re.sub(r"[^0-9X]", "", typed.upper())
    for prefix in ("0086", "86"):  # +86 138 …, 0086-138…
        if digits.startswith(prefix) and _MOBILE.fullmatch(digits[len(prefix):]):
            digits = digits[len(prefix):]
    if _ID_NUMBER.fullmatch(digits):
        return f"{digits[:6]}********{digits[-4:]}"
    if _MOBILE.fullmatch(digits):
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits.rstrip("X")) >= _IDENTIFYING_DIGITS:
        return "*" * len(digits)
    return None


def scrub(text: str | None) -> str | None:
    """Mask mobile numbers and resident ID numbers in free text, however they were typed (issue 23, finding 6:
    `138-0001-0001`, `１３８０００１０００１`, `+86 138 0001 0001`, `110105 19800312 0112`)."""
    if not text:
        return text
    norm, origin = _normalised(text)
    out, last = [], 0
    for m in _TYPED_NUMBER.finditer(norm):
        masked = _mask_number(m.group())
        if masked is None:
            continue
        start, end = origin[m.start()], origin[m.end() - 1] + 1
        out += [text[last:start], masked]
        last = end
    return "".join(out) + text[last:]


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


def public_description(personal_item: bool, publication: RequestPublication | None) -> str | None:
    """What the public may read of a description: the text staff published, numbers masked; nothing before that,
    and nothing ever for a personal item."""
    if personal_item or publication is None or not publication.description:
        return None
    return scrub(publication.description)


def photo_public(req: ServiceRequest, personal_item: bool, publication: RequestPublication | None) -> bool:
    """Whether the public may see the request's photo (Open311 `media_url`): a public matter (not a personal item,
    nobody's own request) whose text staff of its area published; never before, never a resident's own request
    (a photo of a home shows where someone lives)."""
    return not personal_item and req.person_id is None and publication is not None and bool(publication.description)


async def first_photos(session: AsyncSession, ids: list[str]) -> dict[str, str]:
    """Per request id: its first photo still kept (the report's), by upload time."""
    A = Attachment  # noqa: N806
    if not ids:
        return {}
    rows = (await session.execute(select(A.request_id, A.id).where(
        A.request_id.in_(ids), A.kind == "photo", A.purged_at.is_(None)).order_by(A.created_at.desc(), A.id.desc())))
    return {rid: aid for rid, aid in rows.all()}  # the last write per request wins: the earliest photo


def request_out(req: ServiceRequest, item: tuple[str, bool], publication: RequestPublication | None,
                timeline: list[TimelineEntry] | None, photo_url: str | None = None) -> dict[str, Any]:
    """`item`: the item's name for this request and whether it is personal (item_facts); `photo_url`: the signed
    URL of its photo where `photo_public` allows it (else the link the submitter gave, if any)."""
    name, personal_item = item
    personal = personal_item or req.person_id is not None
    lat, long = req.lat, req.long
    if personal and lat is not None:
        lat, long = round(lat, 3), round(long, 3)
    out: dict[str, Any] = {
        "service_request_id": req.id, "status": open_or_closed(req.state), "status_notes": status_notes(req),
        "service_name": name or req.item_code, "service_code": req.item_code,
        "description": public_description(personal_item, publication), "agency_responsible": req.department,
        "service_notice": "",
        "requested_datetime": req.created_at, "updated_datetime": req.updated_at,
        "expected_datetime": req.resolution_due_at or req.response_due_at,
        "address": None if personal else scrub(req.address), "address_id": req.grid, "zipcode": None,
        "lat": lat, "long": long, "media_url": photo_url or req.media_url,
    }
    if timeline is not None:
        out["extended_attributes"] = {"state": req.state, "state_name": STATE_ZH.get(req.state, req.state),
                                      "escalation_level": req.escalation_level, "timeline": timeline_out(timeline)}
    return out


async def item_facts(session: AsyncSession, reqs: list[ServiceRequest]) -> dict[str, tuple[str, bool]]:
    """Per request id: the name of the item version it used, and whether the item is personal, in that version
    or in the latest one (a description typed under a personal item stays unpublished if the item changes)."""
    codes = {r.item_code for r in reqs}
    if not codes:
        return {}
    rows = (await session.execute(select(CatalogueItemVersion.item_code, CatalogueItemVersion.version,
                                         CatalogueItemVersion.name, CatalogueItemVersion.personal)
                                  .where(CatalogueItemVersion.item_code.in_(codes)))).all()
    latest: dict[str, tuple[int, str, bool]] = {}
    for code, version, name, personal in rows:
        if code not in latest or version > latest[code][0]:
            latest[code] = (version, name, personal)
    by_version = {(c, v): (n, p) for c, v, n, p in rows}
    out: dict[str, tuple[str, bool]] = {}
    for r in reqs:
        _, latest_name, latest_personal = latest.get(r.item_code, (0, "", True))
        name, personal = by_version.get((r.item_code, r.item_version), (latest_name, True))
        out[r.id] = (name, personal or latest_personal)
    return out


async def publications(session: AsyncSession, ids: list[str]) -> dict[str, RequestPublication]:
    if not ids:
        return {}
    rows = (await session.execute(select(RequestPublication).where(RequestPublication.request_id.in_(ids))))
    return {p.request_id: p for p in rows.scalars()}


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
