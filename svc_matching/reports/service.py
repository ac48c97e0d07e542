"""Reports on the two lists: gaps (needs no provider can take) and duplicates (重复投入)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_matching import engine
from svc_matching.directory.models import Location, Service, ServiceAtLocation
from svc_matching.offers.service import OPEN_NEEDS, engine_need, load_providers
from svc_matching.people.models import Need
from svc_matching.people.service import grid_of
from svc_matching.settings import MatchingSettings


async def gaps(session: AsyncSession, settings: MatchingSettings, place_code: str | None) -> dict:
    """Open or unmatched needs with no eligible provider, by category and grid, with why providers were ruled out."""
    stmt = select(Need).where(Need.status.in_(OPEN_NEEDS)).order_by(Need.id)
    if place_code:
        stmt = stmt.where(Need.place_code.startswith(place_code))
    needs = list((await session.execute(stmt)).scalars())
    providers, _ = await load_providers(session)
    w = settings.weights()
    groups: dict[tuple[str, str | None], dict] = {}
    for n in needs:
        en = engine_need(n)
        reasons: dict[str, int] = {}
        eligible = 0
        for p in providers:
            reason, _ = engine.check(en, p, w)
            if reason is None:
                eligible += 1
                break
            reasons[reason] = reasons.get(reason, 0) + 1
        if eligible:
            continue
        g = groups.setdefault((n.category, grid_of(n.place_code)), {
            "category": n.category, "grid": grid_of(n.place_code), "needs": 0, "need_ids": [], "excluded_by": {}})
        g["needs"] += 1
        g["need_ids"].append(n.id)
        for k, v in reasons.items():
            g["excluded_by"][k] = g["excluded_by"].get(k, 0) + v
    items = sorted(groups.values(), key=lambda g: (-g["needs"], g["category"], g["grid"] or ""))
    for g in items:
        g["excluded_by"] = {k: {"count": v, "zh": engine.FILTER_TEXT[k][0], "en": engine.FILTER_TEXT[k][1]}
                            for k, v in sorted(g["excluded_by"].items())}
    unmet = sum(g["needs"] for g in items)
    # beside the needs of named people: what anonymous surveys asked for, by category (ADR 0019)
    from svc_matching.survey_needs.service import demand
    return {"open_needs": len(needs), "unmet_needs": unmet, "groups": items,
            "survey_demand": await demand(session, place_code)}


async def duplicates(session: AsyncSession, settings: MatchingSettings, place_code: str | None) -> dict:
    """Active services of different organisations offering the same category within one 15-minute circle."""
    from svc_matching.directory.models import ServiceAttribute, TaxonomyTerm

    rows = (await session.execute(
        select(Service, Location, TaxonomyTerm.code)
        .join(ServiceAtLocation, ServiceAtLocation.service_id == Service.id)
        .join(Location, Location.id == ServiceAtLocation.location_id)
        .join(ServiceAttribute, ServiceAttribute.service_id == Service.id)
        .join(TaxonomyTerm, TaxonomyTerm.id == ServiceAttribute.taxonomy_term_id)
        .where(Service.status == "active", TaxonomyTerm.taxonomy == "category")
        .order_by(TaxonomyTerm.code, Service.id, Location.id))).all()
    if place_code:
        rows = [r for r in rows if (r[1].place_code or "").startswith(place_code)]
    radius = settings.match_walk_circle_m
    by_cat: dict[str, list] = {}
    for svc, loc, cat in rows:
        by_cat.setdefault(cat, []).append((svc, loc))
    groups, duplicated = [], set()
    for cat, entries in sorted(by_cat.items()):
        seen: set[str] = set()
        for i, (svc, loc) in enumerate(entries):
            if svc.id in seen:
                continue
            near = [(s2, l2) for s2, l2 in entries[i + 1:]
                    if s2.organization_id != svc.organization_id and s2.id not in seen
                    and engine.haversine_m(loc.latitude, loc.longitude, l2.latitude, l2.longitude) <= radius]
            if not near:
                continue
            members = [(svc, loc)] + near
            seen.update(s.id for s, _ in members)
            duplicated.update(s.id for s, _ in members)
            groups.append({"category": cat, "grid": grid_of(loc.place_code),
                           "services": [{"id": s.id, "name": s.name, "organization_id": s.organization_id,
                                         "location_id": l.id} for s, l in members]})
    total = len({svc.id for svc, _, _ in rows})
    return {"resources": total, "duplicated_resources": len(duplicated),
            "duplicate_rate": round(len(duplicated) / total, 4) if total else 0.0,
            "radius_m": radius, "groups": groups}
