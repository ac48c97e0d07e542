"""Which event tells whom what, with which urgency: rules as data, and the handler that applies them.

An event (a `notice.` feed row from another service, or svc_residents' own) names its kind and carries what the
words need. Each rule picks an audience and a template; the audience resolves to recipients:
- `requester`: the person the request is for (a proxy's submission included: the person acted for, who may
  read it with their proxy in the app); nobody when the request has no person (a grid patrol's report).
- `assignee`: the grid worker (`user:<username>`) or the staff contacts of the department or provider a request
  was dispatched to.
- `grid_worker`: the workers of the request's grid (places.models.GridWorker).
- `community_staff`: the staff contacts of the request's community; `escalation_target`: of the level the
  request was escalated to (community, street or department).
- `provider`: the staff contacts of a provider organisation, or the volunteer's person (offers made and about to
  expire, svc_matching/offers/notices.py); `person`: the person the event is about (a booking's or
  an activity sign-up's resident, svc_matching/bookings/notices.py); `persons`: a batch of persons (`person_ids`:
  a survey's invitees, svc_metrics/surveys/notices.py; the words never carry the survey's one-time token).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import SHANGHAI
from svc_residents.notifications.models import StaffContact
from svc_residents.notifications.service import Message, notify_many
from svc_residents.notifications.templates import TEMPLATES
from svc_residents.places.models import GridWorker, Place

log = logging.getLogger("onenet.notifications")


@dataclass(frozen=True)
class Rule:
    audience: str
    template: str
    urgency: str = "normal"
    staff: bool = False  # an emergency request makes it an emergency for staff (no quiet hours)


R = Rule
RULES: dict[str, tuple[Rule, ...]] = {
    "request.accepted": (R("requester", "request.accepted"),),
    "request.rejected": (R("requester", "request.rejected"),),
    "request.dispatched": (R("requester", "request.dispatched"), R("assignee", "request.assigned", staff=True)),
    "request.claimed": (R("requester", "request.claimed"),),
    "request.resolved": (R("requester", "request.resolved"),),
    "request.reopened": (R("requester", "request.reopened"),
                         R("grid_worker", "request.reopened.staff", staff=True)),
    "request.escalated": (R("escalation_target", "request.escalated", "urgent", staff=True),),
    "request.overdue": (R("community_staff", "request.overdue", "urgent", staff=True),
                        R("grid_worker", "request.overdue", "urgent", staff=True)),
    "offer.made": (R("provider", "offer.made"),),
    "offer.expiring": (R("provider", "offer.expiring", "urgent"),),
    "verification.needs_resident": (R("person", "verification.needs_resident"),),
    "warning.opened": (R("community_staff", "warning.opened", "urgent", staff=True),
                       R("grid_worker", "warning.opened", "urgent", staff=True)),
    **{f"booking.{e}": (R("person", f"booking.{e}"),) for e in (
        "confirmed", "approved", "rejected", "promoted", "promoted_pending", "rescheduled", "cancelled", "reminder")},
    **{f"signup.{e}": (R("person", f"signup.{e}"),) for e in ("confirmed", "promoted", "reminder")},
    **{f"survey.{e}": (R("persons", f"survey.{e}"),) for e in ("invited", "invited_named", "reminder")},
}
LEVELS_ZH = {"community": "社区", "street": "街道", "department": "职能部门", "district": "区级"}
BREACHES_ZH = {"response": "响应", "start": "开始处置", "resolution": "办结", "still_overdue": "仍未办结"}


def number_of(request_id: str | None) -> str:
    """The number residents read and say on the phone: the request id's last 8 characters."""
    return (request_id or "")[-8:].upper()


def variables(data: dict[str, Any]) -> dict[str, str]:
    """Every value a template may need, from an event's data (each template takes its own: see `handle`)."""
    assignee = data.get("assignee") or {}
    return {
        "number": number_of(data.get("request_id")),
        "item": data.get("item_name") or data.get("item_code") or "服务",
        "reason": data.get("note") or data.get("reason") or "未说明",
        "assignee": assignee.get("name") or {"grid_worker": "网格员", "department": "职能部门",
                                             "provider": "服务机构"}.get(assignee.get("kind"), "工作人员"),
        "level": LEVELS_ZH.get(data.get("escalation_level") or "", data.get("escalation_level") or "上级"),
        "breaches": "、".join(BREACHES_ZH.get(b, b) for b in data.get("breaches") or ["still_overdue"]),
        "expires": _local(_parse(data.get("expires_at")), "近期"),
        "field": data.get("field") or "登记",
        "community": data.get("community_name") or data.get("community") or "社区",
        "title": data.get("title") or "预警",
        "when": _local(data.get("starts_at")),
    }


def _parse(at: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(at) if at else None
    except ValueError:
        return None


def _local(at: datetime | None, unknown: str = "预约时间") -> str:
    """A time as residents read it: `12月8日 14:00` (Asia/Shanghai)."""
    if at is None:
        return unknown
    t = at.astimezone(SHANGHAI)
    return f"{t.month}月{t.day}日 {t:%H:%M}"


async def _staff(session: AsyncSession, scope: str) -> list[str]:
    rows = await session.execute(select(StaffContact.user_id).where(StaffContact.scope == scope,
                                                                    StaffContact.active.is_(True)))
    return [f"user:{u}" for u in rows.scalars()]


async def recipients(session: AsyncSession, audience: str, data: dict[str, Any]) -> list[str]:
    community, grid = data.get("community"), data.get("grid")
    if audience in ("requester", "person"):
        return [f"person:{data['person_id']}"] if data.get("person_id") else []
    if audience == "persons":
        return [f"person:{p}" for p in data.get("person_ids") or []]
    if audience == "assignee":
        a = data.get("assignee") or {}
        if a.get("kind") == "grid_worker":
            return [f"user:{a['id']}"]
        if a.get("kind") in ("department", "provider"):
            return await _staff(session, f"{'dept' if a['kind'] == 'department' else 'provider'}:{a['id']}")
        return []
    if audience == "grid_worker":
        rows = await session.execute(select(GridWorker.user_id).where(GridWorker.grid_code == grid))
        return [f"user:{u}" for u in rows.scalars()] if grid else []
    if audience == "community_staff":
        return await _staff(session, f"community:{community}") if community else []
    if audience == "escalation_target":
        level = data.get("escalation_level")
        if level == "street" and data.get("street"):
            return await _staff(session, f"street:{data['street']}")
        if level == "department" and data.get("department"):
            return await _staff(session, f"dept:{data['department']}")
        return await _staff(session, f"community:{community}") if community else []
    if audience == "provider":  # a service's organisation (its staff contacts) or a volunteer (the person)
        staff = await _staff(session, f"provider:{data['provider_id']}") if data.get("provider_id") else []
        return staff + ([f"person:{data['person_id']}"] if data.get("person_id") else [])
    raise KeyError(audience)


async def handle(session: AsyncSession, kind: str, event_id: str, data: dict[str, Any], *, now: datetime) -> int:
    """Apply the rules of event `kind` (in the caller's transaction), every recipient of every rule in one batch.
    Returns how many messages were stored now; an event handled before stores nothing (idempotent by event and
    recipient), an unknown kind nothing, a recipient unknown here (merged away) is skipped."""
    if data.get("community") and not data.get("community_name"):  # the words name the place, as people know it
        place = await session.get(Place, data["community"])
        data = {**data, "community_name": place.name if place else None}
    values = variables(data)
    messages = []
    for rule in RULES.get(kind, ()):
        urgency = "emergency" if rule.staff and data.get("priority") == "emergency" else rule.urgency
        wanted = {k: values[k] for k in TEMPLATES[rule.template].variables}
        for r in dict.fromkeys(await recipients(session, rule.audience, data)):
            messages.append(Message(r, rule.template, wanted, f"{event_id}:{rule.template}", urgency,
                                    subject=data.get("request_id") or data.get("subject"),
                                    community=data.get("community"), grid=data.get("grid")))
    stored = await notify_many(session, messages, now=now, unknown="skip") if messages else []
    if any(s is None for s in stored):  # a person merged away or unknown here: nobody to tell
        log.warning("notice for an unknown recipient skipped", extra={"event_id": event_id, "kind": kind})
    return sum(1 for s in stored if s is not None and s.created)
