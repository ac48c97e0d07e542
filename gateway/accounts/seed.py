"""The demo administrators (idempotent): one per level, for the README tour. Each signs in with the demo password,
gets an enrolment ticket (no token) and enrols a TOTP authenticator before its first token. The demo ops1 has its
authenticator already (`DEMO_TOTP_SECRETS`): `demo_code` is what that authenticator shows (`onenet totp ops1`)."""
from __future__ import annotations

from datetime import datetime

import pyotp

from common.clock import Clock
from common.db import Database
from common.demo import DEMO_PASSWORD, DEMO_TOTP_SECRETS
from gateway.accounts.audit import entry, place_of
from gateway.accounts.models import TotpFactor
from gateway.identity.tokens import hash_secret
from gateway.members.models import User

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


def demo_code(username: str, at: datetime, step_offset: int = 0) -> str | None:
    """The current code of a demo user's authenticator (None for a user without one)."""
    secret = DEMO_TOTP_SECRETS.get(username)
    return pyotp.TOTP(secret).at(at, counter_offset=step_offset) if secret else None
