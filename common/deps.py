"""Request-scoped FastAPI dependencies: what an endpoint works with, taken from the app instead of read off
`request.app.state` by hand.

    async def get_offer(offer_id: str, session: DbSession, principal: CurrentPrincipal, clock: AppClock): ...

- `DbSession`: an `AsyncSession` of the app's database, opened for the endpoint and closed when it returns
  (before the response is sent). No transaction is begun: a write says `async with session.begin():`, so the
  commit happens inside the endpoint and a failure to commit is the endpoint's error, never lost after the answer.
- `AppDb`: the `common.db.Database` itself (idempotent creates, write gates, several sessions).
- `AppClock`: the app's one clock (`common.clock`); `CurrentPrincipal`: the verified caller (`common.auth`).
- `AppSettings`: the service's settings; `AppVerifier`: the app's `common.auth.TokenVerifier` (for a token that
  comes other than as the bearer header `CurrentPrincipal` reads); `state("protection")`: any other object the app
  keeps in its state (a service gives the ones its endpoints take a typed alias beside the object's class).

Background jobs and middleware, which have no request, keep reading `app.state`.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from common.auth import Principal, TokenVerifier, get_principal
from common.clock import Clock, get_clock
from common.db import Database
from common.settings import ServiceSettings


async def get_db(conn: HTTPConnection) -> Database:
    return conn.app.state.db


async def get_session(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    async with conn.app.state.db.session() as session:
        yield session


async def get_settings(conn: HTTPConnection) -> ServiceSettings:
    return conn.app.state.settings


def state(name: str):
    """A dependency giving `app.state.<name>` (None when the app has none)."""

    async def _state(conn: HTTPConnection) -> Any:
        return getattr(conn.app.state, name, None)

    _state.__name__ = f"state_{name}"
    return Depends(_state)


AppDb = Annotated[Database, Depends(get_db)]
# scope="function": the session is closed as the endpoint returns, not after the response has gone out
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
AppClock = Annotated[Clock, Depends(get_clock)]
CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
AppSettings = Annotated[ServiceSettings, Depends(get_settings)]
AppVerifier = Annotated[TokenVerifier, state("verifier")]
