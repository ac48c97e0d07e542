"""Retention by kind: once a request has ended (closed, cancelled, rejected or merged) its photos are kept
`photo_retention_days` and its material files `material_retention_days`, then the purge job deletes the objects
and marks the rows purged (the row stays: that a file existed, its checksum, who uploaded it). A store that is
down leaves the rows for the next run."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from common.db import Database
from common.periodic import AGAIN
from common.storage import ObjectStore, StoreUnavailable
from svc_services.attachments.models import Attachment
from svc_services.requests.lifecycle import TERMINAL
from svc_services.requests.models import ServiceRequest

BATCH = 200


async def purge_expired(db: Database, store: ObjectStore, settings, now: datetime):
    """One batch of expired files deleted; AGAIN when the batch was full."""
    ended = func.coalesce(ServiceRequest.closed_at, ServiceRequest.updated_at)
    done = 0
    for kind, days in (("photo", settings.photo_retention_days), ("material", settings.material_retention_days)):
        cutoff = now - timedelta(days=days)
        async with db.session() as session:
            ids = list((await session.execute(
                select(Attachment.id).join(ServiceRequest, ServiceRequest.id == Attachment.request_id)
                .where(Attachment.kind == kind, Attachment.purged_at.is_(None),
                       ServiceRequest.state.in_(sorted(TERMINAL)), ended < cutoff)
                .order_by(Attachment.id).limit(BATCH))).scalars())
        purged = []
        for aid in ids:
            try:
                await store.delete(aid)
                await store.delete(f"{aid}-thumb")
            except StoreUnavailable:
                break
            purged.append(aid)
        if purged:
            async with db.session() as session, session.begin():
                await session.execute(update(Attachment).where(Attachment.id.in_(purged))
                                      .values(purged_at=now, wrapped_key=None))
        done = max(done, len(ids))
    return AGAIN if done >= BATCH else None
