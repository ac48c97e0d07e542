"""The `notice.` feed: survey invitations and the reminder, for svc_residents' notification engine (docs/adr/0017,
0019; svc_residents/notifications/rules.py says who is told what, in which words).

Written in the transaction that records the invitations (or claims the reminder), through the outbox (ADR 0007:
its subject a fresh id, delivered as `PUT /residents/v1/notices/{subject}`, which stores nothing twice). One row
per grid and batch of at most `BATCH` persons (`person_ids`), so a community-wide survey is a few rows, not one
per resident.

What a row carries: the survey's id and title, the persons, their grid. Never a token: the message tells people
how to answer (the app takes the token after sign-in, the kiosk after signing in there, staff on a visit), so
neither the outbox, the relay, svc_residents' message store nor the SMS platform ever holds a token that could
join a person to a response (docs/adr/0019-surveys.md, "Invitations").
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from common.ids import new_id
from common.outbox import record_event
from svc_metrics.base import OutboxEvent

FEED = "notice."
BATCH = 500  # persons per notice row (svc_residents' NoticeIn takes up to 1000)


def record_survey_notices(session: AsyncSession, s, event: str, invitees: Iterable[tuple[str, str | None]],
                          now: datetime) -> int:
    """`event` (survey.invited | survey.invited_named | survey.reminder) for `invitees` ((person id, grid)
    pairs), one row per grid and batch; how many rows were written."""
    by_grid: dict[str | None, list[str]] = defaultdict(list)
    for person_id, grid in invitees:
        by_grid[grid].append(person_id)
    rows = 0
    for grid in sorted(by_grid, key=lambda g: g or ""):
        persons = sorted(by_grid[grid])
        for i in range(0, len(persons), BATCH):
            community = grid[:12] if grid and len(grid) >= 12 else (s.scope if len(s.scope) == 12 else None)
            record_event(session, OutboxEvent, f"{FEED}{event}", subject=new_id(), now=now,
                         data={"event": event, "person_ids": persons[i:i + BATCH], "subject": s.id,
                               "title": s.title[:100], "community": community, "grid": grid})
            rows += 1
    return rows
