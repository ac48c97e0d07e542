"""From needs to accepted work: the engine's candidates become a proposal; offers walk down it
(派单 → 接单). Accept, decline or expiry moves on; the match time is recorded on acceptance."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem
from common.ids import new_id
from common.outbox import record_event
from common.errors import NotFound, check_if_match
from common.lookup import get_or_404
from svc_matching import engine
from svc_matching.access import is_own, sees_place
from svc_matching.base import OutboxEvent
from svc_matching.directory.models import (
    Location, Schedule, Service, ServiceAtLocation, ServiceAttribute, ServiceCapacity, TaxonomyTerm,
)
from svc_matching.geo import slots
from svc_matching.offers.models import MatchProposal, Offer
from svc_matching.offers.notices import record_offer_notice
from svc_matching.people.models import Need, Volunteer
from svc_matching.people.service import community_of, grid_of
from svc_matching.settings import MatchingSettings
from svc_matching.timebank.service import credit_member

ACTIVE = ("pending", "accepted")
OPEN_NEEDS = ("open", "unmatched")
# staff who match needs, answer an offer for its provider (phone, counter) and confirm completion: within the
# need's place (ops everywhere); no department or member system (svc_matching/access.py)
STAFF = ("community_staff", "street_staff", "ops")
NOT_FOUND = ("派单不存在", "Offer not found")


@dataclass
class ProviderInfo:
    kind: str
    id: str
    name: str
    organization_id: str | None = None
    person_id: str | None = None


def engine_need(n: Need) -> engine.Need:
    return engine.Need(id=n.id, category=n.category, lat=n.latitude, lon=n.longitude, priority=n.priority_score,
                       window_start=n.window_start, window_end=n.window_end, age=n.requester_age,
                       tags=frozenset(n.requester_tags or ()), place_code=n.place_code)


async def _loads(session: AsyncSession) -> dict[tuple[str, str], int]:
    rows = await session.execute(select(Offer.provider_kind, Offer.provider_id, func.count())
                                 .where(Offer.status.in_(ACTIVE)).group_by(Offer.provider_kind, Offer.provider_id))
    return {(k, i): c for k, i, c in rows}


async def _ratings(session: AsyncSession) -> dict[tuple[str, str], float]:
    rows = await session.execute(select(Offer.provider_kind, Offer.provider_id, func.avg(Offer.rating))
                                 .where(Offer.rating.is_not(None)).group_by(Offer.provider_kind, Offer.provider_id))
    return {(k, i): float(a) for k, i, a in rows}


async def load_providers(session: AsyncSession) -> tuple[list[engine.Provider], dict[str, ProviderInfo]]:
    """Every active service (at its first location) and every active volunteer, as engine providers."""
    loads, ratings = await _loads(session), await _ratings(session)
    providers: list[engine.Provider] = []
    info: dict[str, ProviderInfo] = {}
    services = list((await session.execute(select(Service).where(Service.status == "active")
                                           .order_by(Service.id))).scalars())
    terms: dict[str, dict[str, set[str]]] = {}
    for sid, tax, code in await session.execute(
            select(ServiceAttribute.service_id, TaxonomyTerm.taxonomy, TaxonomyTerm.code)
            .join(TaxonomyTerm, TaxonomyTerm.id == ServiceAttribute.taxonomy_term_id)):
        terms.setdefault(sid, {}).setdefault(tax, set()).add(code)
    caps = {c.service_id: c.maximum for c in (await session.execute(select(ServiceCapacity))).scalars()}
    locs: dict[str, Location] = {}
    for sal, loc in await session.execute(select(ServiceAtLocation, Location)
                                          .join(Location, Location.id == ServiceAtLocation.location_id)
                                          .order_by(ServiceAtLocation.id)):
        locs.setdefault(sal.service_id, loc)
    scheds: dict[str, list[dict]] = {}
    for s in (await session.execute(select(Schedule).order_by(Schedule.id))).scalars():
        scheds.setdefault(s.service_id, []).append({"byday": s.byday, "opens_at": s.opens_at, "closes_at": s.closes_at})
    for s in services:
        loc = locs.get(s.id)
        if loc is None:
            continue
        pid = f"service:{s.id}"
        providers.append(engine.Provider(
            id=pid, categories=frozenset(terms.get(s.id, {}).get("category", ())), lat=loc.latitude,
            lon=loc.longitude, capacity=caps.get(s.id, 0), active=loads.get(("service", s.id), 0),
            radius_m=s.service_area_radius_m, area_codes=tuple(s.service_area_codes or ()),
            rating=ratings.get(("service", s.id)), min_age=s.minimum_age, max_age=s.maximum_age,
            eligibility=frozenset(terms.get(s.id, {}).get("eligibility", ())), schedule=slots(scheds.get(s.id, []))))
        info[pid] = ProviderInfo("service", s.id, s.name, organization_id=s.organization_id)
    for v in (await session.execute(select(Volunteer).where(Volunteer.status == "active")
                                    .order_by(Volunteer.id))).scalars():
        pid = f"volunteer:{v.id}"
        providers.append(engine.Provider(
            id=pid, categories=frozenset(v.skills or ()), lat=v.latitude, lon=v.longitude, capacity=v.max_load,
            active=loads.get(("volunteer", v.id), 0), radius_m=v.service_radius_m,
            rating=ratings.get(("volunteer", v.id)), schedule=slots(v.availability or [])))
        info[pid] = ProviderInfo("volunteer", v.id, v.name, person_id=v.person_id)
    return providers, info


def candidate_out(c: engine.Candidate, info: dict[str, ProviderInfo]) -> dict:
    p = info[c.provider_id]
    return {"provider": {"kind": p.kind, "id": p.id, "name": p.name}, "cost": c.cost,
            "distance_m": round(c.distance_m), "reasons": c.reasons}


def excluded_out(excluded: dict[str, int]) -> dict:
    return {k: {"count": v, "zh": engine.FILTER_TEXT[k][0], "en": engine.FILTER_TEXT[k][1]}
            for k, v in sorted(excluded.items())}


async def candidates(session: AsyncSession, need: Need, settings: MatchingSettings, k: int | None = None) -> dict:
    providers, info = await load_providers(session)
    cands, excluded = engine.top_k(engine_need(need), providers, settings.weights(), k or settings.match_candidates)
    return {"need_id": need.id, "candidates": [candidate_out(c, info) for c in cands],
            "excluded": excluded_out(excluded)}


async def _capacity_left(session: AsyncSession, kind: str, pid: str) -> bool:
    if kind == "service":
        svc = await session.get(Service, pid)
        cap = (await session.execute(select(ServiceCapacity.maximum).where(ServiceCapacity.service_id == pid))
               ).scalar_one_or_none()
        if svc is None or svc.status != "active" or cap is None:
            return False
    else:
        vol = await session.get(Volunteer, pid)
        if vol is None or vol.status != "active":
            return False
        cap = vol.max_load
    active = (await session.execute(select(func.count()).select_from(Offer).where(
        Offer.provider_kind == kind, Offer.provider_id == pid, Offer.status.in_(ACTIVE)))).scalar_one()
    return active < cap


async def offer_next(session: AsyncSession, need: Need, proposal: MatchProposal, now: datetime,
                     settings: MatchingSettings) -> Offer | None:
    """Offer the need to the next candidate that still has room; none left → the need is unmatched."""
    while proposal.next_rank < len(proposal.candidates):
        rank = proposal.next_rank
        cand = proposal.candidates[rank]
        proposal.next_rank = rank + 1
        kind, pid = cand["provider"]["kind"], cand["provider"]["id"]
        if not await _capacity_left(session, kind, pid):
            continue
        offer = Offer(id=new_id(), need_id=need.id, proposal_id=proposal.id, provider_kind=kind, provider_id=pid,
                      rank=rank, cost=cand["cost"], status="pending", created_at=now,
                      expires_at=now + timedelta(minutes=settings.offer_ttl_minutes), version=1)
        session.add(offer)
        need.status = "offered"
        need.version += 1
        await session.flush()
        await record_offer_notice(session, offer, need, "made", now)  # the provider is told, in this transaction
        return offer
    need.status = "unmatched"
    need.version += 1
    await session.flush()
    return None


async def propose(session: AsyncSession, need: Need, cands: list[dict], mode: str, now: datetime,
                  settings: MatchingSettings) -> tuple[MatchProposal, Offer | None]:
    if need.status not in OPEN_NEEDS:
        raise Problem(409, "need.not_open", ("该需求已在派单或已匹配", "The need is already offered or matched"))
    proposal = MatchProposal(id=new_id(), need_id=need.id, mode=mode, candidates=cands, next_rank=0, created_at=now)
    session.add(proposal)
    await session.flush()
    record_event(session, OutboxEvent, "match.proposed", subject=need.id,
                 data={"need_id": need.id, "proposal_id": proposal.id, "mode": mode, "category": need.category,
                       "candidates": [{"kind": c["provider"]["kind"], "id": c["provider"]["id"], "cost": c["cost"]}
                                      for c in cands]},
                 community=community_of(need.place_code), grid=grid_of(need.place_code), now=now)
    offer = await offer_next(session, need, proposal, now, settings)
    return proposal, offer


async def match_one(session: AsyncSession, need: Need, now: datetime, settings: MatchingSettings):
    found = await candidates(session, need, settings)
    proposal, offer = await propose(session, need, found["candidates"], "single", now, settings)
    return proposal, offer, found


async def match_batch(session: AsyncSession, principal: Principal, need_ids: list[str] | None,
                      place_code: str | None, now: datetime, settings: MatchingSettings) -> dict:
    stmt = select(Need).where(Need.status.in_(OPEN_NEEDS)).order_by(Need.id)
    if need_ids:
        stmt = stmt.where(Need.id.in_(need_ids))
    if place_code:
        stmt = stmt.where(Need.place_code.startswith(place_code))
    needs = [n for n in (await session.execute(stmt)).scalars() if sees_place(principal, n.place_code)]
    providers, info = await load_providers(session)
    w = settings.weights()
    eneeds = [engine_need(n) for n in needs]
    result = engine.solve_batch(eneeds, providers, w)
    greedy_cost = engine.total_cost(eneeds, providers, engine.greedy(eneeds, providers, w), w)
    offers = []
    by_id = {n.id: n for n in needs}
    for en in eneeds:
        chosen = result.assignments.get(en.id)
        if chosen is None:
            continue
        cands, _ = engine.top_k(en, providers, w, settings.match_candidates + 1)
        first = next((c for c in cands if c.provider_id == chosen), None)
        if first is None:
            p = next(p for p in providers if p.id == chosen)
            first = engine.explain(en, p, engine.haversine_m(en.lat, en.lon, p.lat, p.lon), w)
        first.reasons.append({"factor": "batch", "cost": 0, "zh": "批量最优分配的结果", "en": "Chosen by the batch optimum"})
        ordered = [first] + [c for c in cands if c.provider_id != chosen][: settings.match_candidates - 1]
        _, offer = await propose(session, by_id[en.id], [candidate_out(c, info) for c in ordered], "batch", now,
                                 settings)
        if offer is not None:
            offers.append(offer)
    return {"needs": len(needs), "assigned": len(result.assignments), "unassigned": result.unassigned,
            "total_cost": result.total_cost, "greedy_cost": greedy_cost, "offers": offers}


async def get_offer(session: AsyncSession, principal: Principal, offer_id: str) -> Offer:
    """The offer, if the caller may see it: staff of the need's place, ops, the provider it was made to. Anyone
    else gets the answer an unknown offer gets (404)."""
    return await get_or_404(session, Offer, offer_id, NotFound("offer.not_found", NOT_FOUND),
                            visible=lambda offer: _may_see_offer(session, principal, offer))


async def _may_see_offer(session: AsyncSession, principal: Principal, offer: Offer) -> bool:
    if principal.role in STAFF:
        need = await session.get(Need, offer.need_id)
        return need is not None and sees_place(principal, need.place_code)
    return await _made_to(session, principal, offer)


async def _made_to(session: AsyncSession, principal: Principal, offer: Offer) -> bool:
    """The caller is the provider the offer was made to: its organisation, or the volunteer."""
    if offer.provider_kind == "service":
        svc = await session.get(Service, offer.provider_id)
        return (svc is not None and principal.role == "provider"
                and svc.organization_id in principal.scope_values("provider"))
    vol = await session.get(Volunteer, offer.provider_id)
    return vol is not None and (is_own(principal, vol.person_id) or vol.id in principal.scope_values("volunteer"))


def _check_version(offer: Offer, if_match: str | None) -> None:
    check_if_match(if_match, offer.version, ("派单状态已变化，请刷新后重试", "The offer changed; reload and retry"))


def _pending(offer: Offer) -> None:
    if offer.status != "pending":
        raise Problem(409, "offer.not_pending", (f"该派单当前状态为 {offer.status}，不能再处理",
                                                 f"The offer is {offer.status}"))


async def _event(session, type_: str, offer: Offer, need: Need, now: datetime, **data) -> None:
    record_event(session, OutboxEvent, type_, subject=offer.id,
                 data={"need_id": need.id, "provider_kind": offer.provider_kind, "provider_id": offer.provider_id,
                       "rank": offer.rank, "category": need.category, **data},
                 community=community_of(need.place_code), grid=grid_of(need.place_code), now=now)


async def expire_offer(session: AsyncSession, offer: Offer, now: datetime, settings: MatchingSettings) -> Offer | None:
    need = await session.get(Need, offer.need_id)
    offer.status, offer.responded_at, offer.version = "expired", now, offer.version + 1
    await _event(session, "offer.expired", offer, need, now)
    proposal = await session.get(MatchProposal, offer.proposal_id)
    return await offer_next(session, need, proposal, now, settings)


async def accept(session: AsyncSession, offer: Offer, now: datetime,
                 settings: MatchingSettings, if_match: str | None) -> bool:
    """True when accepted; False when the offer had already expired (it is expired now and moved on). The offer
    comes from `get_offer`: whoever sees it (the provider, staff of the need's place) may answer it."""
    _check_version(offer, if_match)
    _pending(offer)
    if now >= offer.expires_at:
        await expire_offer(session, offer, now, settings)
        return False
    need = await session.get(Need, offer.need_id)
    offer.status, offer.responded_at, offer.version = "accepted", now, offer.version + 1
    need.status, need.matched_kind, need.matched_id, need.matched_at = "matched", offer.provider_kind, \
        offer.provider_id, now
    need.match_seconds = (now - need.created_at).total_seconds()
    need.version += 1
    await _event(session, "offer.accepted", offer, need, now, match_seconds=need.match_seconds)
    await session.flush()
    return True


async def decline(session: AsyncSession, offer: Offer, reason: str | None, now: datetime,
                  settings: MatchingSettings, if_match: str | None) -> Offer | None:
    _check_version(offer, if_match)
    _pending(offer)
    need = await session.get(Need, offer.need_id)
    offer.status, offer.responded_at, offer.version = "declined", now, offer.version + 1
    await _event(session, "offer.declined", offer, need, now, reason=reason)
    proposal = await session.get(MatchProposal, offer.proposal_id)
    return await offer_next(session, need, proposal, now, settings)


async def expire_due(session: AsyncSession, now: datetime, settings: MatchingSettings, limit: int = 500) -> int:
    stmt = (select(Offer).where(Offer.status == "pending", Offer.expires_at <= now).order_by(Offer.expires_at, Offer.id)
            .limit(limit))
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    due = list((await session.execute(stmt)).scalars())
    for offer in due:
        await expire_offer(session, offer, now, settings)
    return len(due)


async def complete(session: AsyncSession, principal: Principal, offer: Offer, hours: float | None,
                   rating: int | None, now: datetime, if_match: str | None) -> None:
    """Service delivered: the need is completed, the rating kept, a volunteer's hours credited to the time bank.
    Confirmed by staff of the need's place (the offer comes from `get_offer`), not by the provider."""
    if principal.role not in STAFF:
        raise Problem(403, "forbidden", ("由社区工作人员确认服务完成", "Community staff confirm completion"))
    _check_version(offer, if_match)
    if offer.status != "accepted":
        raise Problem(409, "offer.not_accepted", ("只有已接单的派单才能确认完成", "Only an accepted offer can be completed"))
    need = await session.get(Need, offer.need_id)
    offer.status, offer.completed_at, offer.hours, offer.rating = "completed", now, hours, rating
    offer.version += 1
    need.status = "completed"
    need.version += 1
    if offer.provider_kind == "volunteer" and hours:
        vol = await session.get(Volunteer, offer.provider_id)
        await credit_member(session, person_id=vol.person_id,
                            community=community_of(need.place_code) or community_of(vol.place_code) or "platform",
                            unit="minute", amount=int(round(hours * 60)), client_posting_id=f"offer:{offer.id}:credit",
                            memo=f"志愿服务 {need.category}", reference=offer.id, created_by=principal.caller, now=now,
                            activity="volunteer_service", grid=grid_of(vol.place_code))
    await _event(session, "offer.completed", offer, need, now, hours=hours, rating=rating)
    await session.flush()
