"""svc_metrics' survey_need. feed (docs/adr/0019-surveys.md): a named response's needs become needs of the needs
list (source `survey`, source_ref the response), an anonymous survey's demand replaces that survey's rows of
`survey_demand`. Both are idempotent: the relay may deliver a row twice."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.ids import new_id
from common.outbox import record_event
from svc_matching.base import OutboxEvent
from svc_matching.directory.models import Location
from svc_matching.people.models import Need
from svc_matching.people.service import community_of, grid_of, priority_score
from svc_matching.survey_needs.models import SurveyDemand


async def _centre(session: AsyncSession, place_code: str) -> tuple[float, float]:
    """Where a survey need is placed for matching: the mean position of the directory's locations in its grid,
    else its community, street, else everywhere (a survey answer gives no address)."""
    for code in (place_code, place_code[:12], place_code[:9], ""):
        stmt = select(func.avg(Location.latitude), func.avg(Location.longitude))
        if code:
            stmt = stmt.where(Location.place_code.startswith(code))
        lat, lon = (await session.execute(stmt)).one()
        if lat is not None:
            return float(lat), float(lon)
    return 0.0, 0.0


async def record_needs(session: AsyncSession, response_id: str, person_id: str, categories: list[str],
                       place_code: str, now: datetime) -> list[Need]:
    existing = (await session.execute(select(Need).where(Need.source == "survey", Need.source_ref == response_id)
                                      .order_by(Need.id))).scalars().all()
    if existing:
        return list(existing)
    lat, lon = await _centre(session, place_code)
    out = []
    for cat in categories:
        need = Need(id=new_id(), category=cat, person_id=person_id, priority="normal",
                    priority_score=priority_score("normal", []), requester_tags=[], place_code=place_code,
                    latitude=lat, longitude=lon, source="survey", source_ref=response_id[:64],
                    description="来自需求调研问卷", status="open", created_at=now, version=1)
        session.add(need)
        record_event(session, OutboxEvent, "need.created", subject=need.id,
                     data={"category": cat, "priority": "normal", "priority_score": need.priority_score,
                           "source": "survey", "source_ref": need.source_ref},
                     community=community_of(place_code), grid=grid_of(place_code), now=now)
        out.append(need)
    await session.flush()
    return out


async def replace_demand(session: AsyncSession, survey_id: str, title: str, items: list[dict], now: datetime) -> int:
    await session.execute(delete(SurveyDemand).where(SurveyDemand.survey_id == survey_id))
    session.add_all(SurveyDemand(survey_id=survey_id, title=title[:200], place_code=i["place_code"],
                                 category=i["category"], count=i["count"], updated_at=now) for i in items)
    await session.flush()
    return len(items)


async def demand(session: AsyncSession, place_code: str | None) -> list[dict]:
    """Demand by category from anonymous surveys in the place (most asked first), for the gap report."""
    stmt = select(SurveyDemand.category, func.sum(SurveyDemand.count), func.count(func.distinct(SurveyDemand.survey_id)))
    if place_code:
        stmt = stmt.where(SurveyDemand.place_code.startswith(place_code))
    rows = await session.execute(stmt.group_by(SurveyDemand.category))
    return sorted(({"category": c, "answers": int(n), "surveys": int(k)} for c, n, k in rows),
                  key=lambda d: (-d["answers"], d["category"]))
