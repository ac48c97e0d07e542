"""Two svc_services replicas run the SLA scheduler on one PostgreSQL database: nothing is marked overdue or
escalated twice (issue #9). Each scanner claims a request with `SELECT … FOR UPDATE SKIP LOCKED`."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import func, select, update

from common.db import Database
from svc_services.base import OutboxEvent
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.sla.scan import run_sla_scan
from tests.svc_services.conftest import RES1, submit

N = 40            # emergency requests, all breaching their 1-minute acknowledgement at once
AT_TOP = 10       # of which already escalated to the top of the ladder (overdue marked, nothing to escalate to)


async def _counts(db: Database) -> tuple[Counter, Counter, Counter]:
    async with db.session() as s:
        esc_entries = Counter((await s.execute(
            select(TimelineEntry.request_id).where(TimelineEntry.action == "escalate"))).scalars())
        rows = (await s.execute(select(OutboxEvent.type, OutboxEvent.subject)
                                .where(OutboxEvent.type.in_(("request.escalated", "request.overdue"))))).all()
    escalated = Counter(subj for t, subj in rows if t == "request.escalated")
    overdue = Counter(subj for t, subj in rows if t == "request.overdue")
    return esc_entries, escalated, overdue


async def test_two_schedulers_escalate_each_request_once(ready, auth, clock, backend, db_url):
    if backend != "postgresql":
        pytest.skip("row claims with FOR UPDATE SKIP LOCKED are a PostgreSQL feature; SQLite runs one scheduler")
    client = ready
    settings = client.app.state.settings
    db_a = client.app.state.db
    ids = []
    for i in range(N):
        r = await submit(client, auth, RES1, item_code="YJ-HJ-001", description=f"一键呼叫 {i}")
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    top = set(ids[:AT_TOP])
    async with db_a.session() as s, s.begin():
        await s.execute(update(ServiceRequest).where(ServiceRequest.id.in_(top)).values(escalation_level="department"))

    db_b = Database(db_url)  # a second replica: its own engine and connection pool on the same database
    try:
        async def race():
            return await asyncio.gather(run_sla_scan(db_a, clock, settings), run_sla_scan(db_b, clock, settings))

        clock.advance(seconds=settings.emergency_ack_seconds + 1)  # acknowledgement deadline breached
        ra, rb = await race()
        escalated = ra.escalated + rb.escalated
        assert sorted(escalated) == sorted(set(ids) - top)          # each once, across both scanners
        assert sorted(ra.overdue + rb.overdue) == sorted(ids)
        esc_entries, esc_events, overdue_events = await _counts(db_a)
        assert esc_entries == Counter(set(ids) - top) and esc_events == esc_entries
        assert overdue_events == Counter(ids)

        # both scanners again at the same instant: nothing left to do
        ra, rb = await race()
        assert ra.escalated == rb.escalated == [] and ra.overdue == rb.overdue == []

        # start-handling deadline (3 minutes) breached too: one more step each, still exactly once
        clock.advance(seconds=settings.emergency_start_seconds)
        ra, rb = await race()
        assert sorted(ra.escalated + rb.escalated) == sorted(set(ids) - top)
        esc_entries, esc_events, overdue_events = await _counts(db_a)
        assert set(esc_entries.values()) == {2} and len(esc_entries) == N - AT_TOP and esc_events == esc_entries
        assert set(overdue_events.values()) == {2} and len(overdue_events) == N

        async with db_a.session() as s:
            rows = (await s.execute(select(ServiceRequest.id, ServiceRequest.version, ServiceRequest.escalation_level)
                                    .where(ServiceRequest.id.in_(ids)))).all()
            seqs = dict((await s.execute(select(TimelineEntry.request_id, func.max(TimelineEntry.seq))
                                         .group_by(TimelineEntry.request_id))).all())
        for rid, version, level in rows:
            assert seqs[rid] == version  # the timeline and the row agree
            assert level == ("department" if rid in top else "street")
    finally:
        await db_b.dispose()
