"""The gateway's wiring of sessions: the parts the app keeps (endpoints take them through gateway/accounts/deps.py)
and the background jobs, which have no request: the revoked set read at start-up and every couple of seconds
(what other replicas revoked applies here, and at this gateway's edge, within that time)."""
from __future__ import annotations

import asyncio

from common.periodic import run_periodically
from gateway.edge.link import edge_changed
from gateway.accounts.sessions import RevokedSessions, Sessions
from gateway.settings import REVOCATION_REFRESH_SECONDS


def build_sessions(settings, db, issuer) -> tuple[Sessions, RevokedSessions]:
    # a revoked session's id is kept while one of its access tokens may live (plus a margin for clock skew)
    revoked = RevokedSessions(keep_seconds=settings.session_access_ttl_seconds + 120)
    sessions = Sessions(db, issuer, revoked, access_ttl=settings.session_access_ttl_seconds,
                        idle_seconds=settings.session_idle_seconds, absolute_seconds=settings.session_absolute_seconds,
                        kiosk_idle_seconds=settings.kiosk_idle_seconds)
    return sessions, revoked


async def load_revoked_sessions(app) -> None:
    await app.state.revoked_sessions.load(app.state.db, app.state.clock.now())


async def refresh_revoked_sessions(app, stop: asyncio.Event) -> None:
    async def refresh() -> None:
        if await app.state.revoked_sessions.load(app.state.db, app.state.clock.now()):
            await edge_changed(app)  # another replica signed a session out: the edge's cached decisions go

    await run_periodically("gateway/revoked-sessions", refresh, stop, interval=REVOCATION_REFRESH_SECONDS)
