"""What the accounts' endpoints take (gateway/deps.py has the gateway's other parts): the app's identity parts in
one object, `Accounts`, built by a dependency from the app's state, so the rules (service.py, signin.py,
phone.py, binding.py, proxies.py, kiosk.py) get them passed and never read `app.state` themselves."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from common.db import Database


@dataclass
class AccountParts:
    db: Database
    settings: Any
    sessions: Any  # gateway.accounts.sessions.Sessions
    throttle: Any  # gateway.identity.throttle.LoginThrottle
    issuer: Any  # gateway.identity.tokens.TokenIssuer
    verifier: Any  # common.auth.TokenVerifier
    cert_pins: Any  # gateway.identity.mtls.CertificatePins
    phone: Any  # gateway.accounts.phone.PhoneSignIn
    binder: Any  # gateway.accounts.binding.Binder
    edge: Any  # gateway.edge.link.EdgeLink | None

    async def edge_changed(self) -> None:
        """Sessions ended or rights changed: the edge's cached decisions go (gateway/edge/link.py)."""
        from gateway.edge.link import notify

        await notify(self.edge)


def parts_of(app) -> AccountParts:
    s = app.state
    return AccountParts(db=s.db, settings=s.settings, sessions=s.sessions, throttle=s.login_throttle,
                        issuer=s.token_issuer, verifier=getattr(s, "verifier", None), cert_pins=s.cert_pins,
                        phone=getattr(s, "phone_signin", None), binder=getattr(s, "binder", None),
                        edge=getattr(s, "edge", None))


async def get_parts(conn: HTTPConnection) -> AccountParts:
    return parts_of(conn.app)


def get_source(request: Request) -> str:
    """The caller's address as the audit records it ("-" when the server has none)."""
    return request.client.host if request.client else "-"


Accounts = Annotated[AccountParts, Depends(get_parts)]
Source = Annotated[str, Depends(get_source)]
