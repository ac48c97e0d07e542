"""The `notice.` feed for offers: the provider is told of an offer made to it and, once, that it is about to
expire (docs/adr/0017; svc_residents/notifications/rules.py says who is told what, in which words).

Written in the offer's transaction through the outbox, as the booking notices are (svc_matching/bookings/notices.py:
one row per notice, its subject a fresh id, delivered as `PUT /residents/v1/notices/{subject}`). The row names
whom to tell: a service's organisation (`provider_id`: its staff contacts in svc_residents, scope
`provider:<organisation>`) or a volunteer's person (`person_id`); and carries the need's category name and the
expiry, so the words need nothing more from svc_matching.

The reminder: `EXPIRING_BEFORE` before the offer expires (halfway through an offer made for less than twice that),
from a scan that claims each offer once by a conditional UPDATE of `expiring_notified_at` (two replicas scanning at
once write one row; an offer answered meanwhile is no longer pending and is not reminded). Time only from the
injected clock.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.ids import new_id
from common.outbox import record_event
from svc_matching.base import OutboxEvent
from svc_matching.bookings.notices import FEED
from svc_matching.directory.models import Service, TaxonomyTerm
from svc_matching.offers.models import Offer
from svc_matching.people.models import Need, Volunteer
from svc_matching.people.service import community_of, grid_of

EXPIRING_BEFORE = timedelta(minutes=30)


def expiring_at(offer: Offer) -> datetime:
    """When the provider is reminded: 30 min before the expiry, or halfway for a short offer."""
    return offer.expires_at - min(EXPIRING_BEFORE, (offer.expires_at - offer.created_at) / 2)


async def record_offer_notice(session: AsyncSession, offer: Offer, need: Need, event: str, now: datetime) -> bool:
    """Write `offer.<event>` for the offer's provider; False when there is nobody to tell (an organisation-less
    service, a volunteer without a person record)."""
    org = person = None
    if offer.provider_kind == "service":
        svc = await session.get(Service, offer.provider_id)
        org = svc.organization_id if svc is not None else None
    else:
        vol = await session.get(Volunteer, offer.provider_id)
        person = vol.person_id if vol is not None else None
    if org is None and person is None:
        return False
    name = (await session.execute(select(TaxonomyTerm.name).where(
        TaxonomyTerm.taxonomy == "category", TaxonomyTerm.code == need.category))).scalar_one_or_none()
    data = {"event": f"offer.{event}", "provider_id": org, "person_id": person, "subject": offer.id,
            "community": community_of(need.place_code), "grid": grid_of(need.place_code),
            "item_name": (name or need.category)[:100], "expires_at": offer.expires_at.isoformat()}
    record_event(session, OutboxEvent, f"{FEED}offer.{event}", subject=new_id(), data=data, now=now)
    return True


async def remind_expiring(session: AsyncSession, now: datetime, limit: int = 200) -> int:
    """Write the expiry reminders due at `now` (in the caller's transaction); how many were written."""
    rows = await session.execute(
        select(Offer, Need).join(Need, Need.id == Offer.need_id)
        .where(Offer.status == "pending", Offer.expiring_notified_at.is_(None), Offer.expires_at > now,
               Offer.expires_at <= now + EXPIRING_BEFORE)
        .order_by(Offer.expires_at, Offer.id).limit(limit))
    sent = 0
    for offer, need in rows.all():
        if expiring_at(offer) > now:
            continue
        won = await session.execute(update(Offer).where(Offer.id == offer.id, Offer.status == "pending",
                                                        Offer.expiring_notified_at.is_(None))
                                    .values(expiring_notified_at=now).returning(Offer.id))
        if won.first() is not None:
            sent += await record_offer_notice(session, offer, need, "expiring", now)
    return sent
