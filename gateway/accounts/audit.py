"""The account audit: one row per change and per refusal (who, what, when, where, before/after)."""
from __future__ import annotations

from datetime import datetime

from common.db import Database
from common.ids import new_id
from gateway.accounts.models import AccountAudit

SECRET_FIELDS = ("password", "password_hash", "secret", "code", "codes")


def place_of(scopes: list[str] | tuple[str, ...] | None) -> str | None:
    """The place an account belongs to (its first grid / community / street / district scope)."""
    for s in scopes or ():
        kind, _, value = s.partition(":")
        if kind in ("grid", "community", "street", "district") and value:
            return value
    return None


def snapshot(user) -> dict:
    return {"role": user.role, "scopes": list(user.scopes or []), "admin": bool(user.admin), "status": user.status,
            "display_name": user.display_name, "version": user.version}


def entry(*, now: datetime, actor: str, actor_role: str, action: str, target: str | None = None,
          place: str | None = None, outcome: str = "done", code: str | None = None, source: str | None = None,
          before: dict | None = None, after: dict | None = None) -> AccountAudit:
    def clean(d):
        return {k: v for k, v in d.items() if k not in SECRET_FIELDS} if d is not None else None
    return AccountAudit(id=new_id(), at=now, actor=actor[:64], actor_role=actor_role[:32], action=action,
                        target=target[:64] if target else None, place=place, outcome=outcome, code=code,
                        source=(source or "")[:64] or None, before=clean(before), after=clean(after))


async def record_refusal(db: Database, **kw) -> None:
    """A refusal, in a transaction of its own (the refused change rolled back, its record stays)."""
    async with db.session() as session, session.begin():
        session.add(entry(outcome="refused", **kw))
