"""The demo administrators (idempotent): one per level, for the README tour. Each signs in with the demo password,
gets an enrolment ticket (no token) and enrols a TOTP authenticator before its first token. The demo ops1 has its
authenticator already (`DEMO_TOTP_SECRETS`): `demo_code` is what that authenticator shows (`onenet totp ops1`)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pyotp
from sqlalchemy import select

from common import acting
from common.clock import Clock
from common.db import Database
from common.demo import DEMO_PASSWORD, DEMO_TOTP_SECRETS, DEMO_USERS
from common.ids import new_id
from gateway.accounts.audit import entry, place_of
from gateway.accounts.models import ProxyAuthorisation, TotpFactor
from gateway.identity.tokens import hash_secret
from gateway.members.models import User

# helper, person acted for, the written consent's reference
DEMO_PROXIES = [(u["username"], u["acting_for"], "幸福社区代办授权书 2026-001") for u in DEMO_USERS if u.get("acting_for")]

DEMO_ADMINS = [
    {"username": "admin_xf", "display_name": "孙丽（幸福社区管理员）", "role": "community_staff",
     "scopes": ["community:110105001001"]},
    {"username": "admin_ak", "display_name": "何强（安康社区管理员）", "role": "community_staff",
     "scopes": ["community:110105001002"]},
    {"username": "admin_street", "display_name": "高峰（和平街道管理员）", "role": "street_staff",
     "scopes": ["street:110105001"]},
    {"username": "admin_ops", "display_name": "平台管理员", "role": "ops", "scopes": []},
]


async def seed_admins(db: Database, *, clock: Clock | None = None) -> None:
    now = (clock or Clock()).now()
    password_hash = None
    async with db.session() as session, session.begin():
        for a in DEMO_ADMINS:
            if await session.get(User, a["username"]) is not None:
                continue
            password_hash = password_hash or hash_secret(DEMO_PASSWORD)
            user = User(username=a["username"], display_name=a["display_name"], password_hash=password_hash,
                        role=a["role"], scopes=a["scopes"], admin=True, member_code="portal", status="active",
                        created_at=now, version=1, updated_at=now)
            session.add(user)
            session.add(entry(now=now, actor="demo-seed", actor_role="system", action="account.create",
                              target=user.username, place=place_of(user.scopes),
                              after={"role": user.role, "scopes": user.scopes, "admin": True}))
        for username, secret in DEMO_TOTP_SECRETS.items():
            if await session.get(User, username) is not None and await session.get(TotpFactor, username) is None:
                session.add(TotpFactor(username=username, secret=secret, created_at=now, enabled_at=now))
        await _seed_proxies(session, now)


async def _seed_proxies(session, now: datetime) -> None:
    """The demo helper's authorisations (what gives its sessions `acting_for`), as 幸福社区 recorded them on the
    persons' written consent."""
    for username, person, ref in DEMO_PROXIES:
        helper = await session.get(User, username)
        if helper is None or (await session.execute(select(ProxyAuthorisation.id).where(
                ProxyAuthorisation.helper == username))).first() is not None:
            continue
        a = ProxyAuthorisation(id=new_id(), helper=username, person_id=person, actions=sorted(acting.ACTIONS),
                               starts_at=now, expires_at=now + timedelta(days=365), basis="consent",
                               consent_ref=ref, place=place_of(helper.scopes), granted_by="staff1",
                               granted_by_role="community_staff", created_at=now)
        session.add(a)
        session.add(entry(now=now, actor="demo-seed", actor_role="system", action="proxy.grant", target=username,
                          place=a.place, after={"proxy_authorisation": a.id, "person_id": person}))


def demo_code(username: str, at: datetime, step_offset: int = 0) -> str | None:
    """The current code of a demo user's authenticator (None for a user without one)."""
    secret = DEMO_TOTP_SECRETS.get(username)
    return pyotp.TOTP(secret).at(at, counter_offset=step_offset) if secret else None
