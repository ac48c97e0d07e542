"""Sessions: each sign-in is a family of refresh tokens that rotate on every use; a refresh token used twice
(a replay: someone else holds a copy) revokes its whole family. Access tokens carry the session id (`sid`); a
revoked session's id is in the gateway's live set (`RevokedSessions`), checked on the gateway's own endpoints and
before every forwarded call (so the services, which answer only calls the gateway forwarded, refuse it too), and
re-read from the database every couple of seconds so every replica follows.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from common.db import Database
from common.errors import Problem, field_error
from common.ids import new_id
from gateway.accounts.audit import entry, place_of
from gateway.accounts.models import AuthSession, RefreshToken
from gateway.members.models import User

log = logging.getLogger("onenet.gateway.auth")


class RevokedSessions:
    """The ids of revoked sessions whose access tokens may still be alive. Ids revoked here stay in the set for
    that time whatever a reload read (a reload can run before this replica's revocation committed)."""

    def __init__(self, keep_seconds: float) -> None:
        self.ids: set[str] = set()
        self.local: dict[str, datetime] = {}
        self.keep = timedelta(seconds=keep_seconds)

    def __contains__(self, sid: object) -> bool:
        return sid in self.ids

    def __bool__(self) -> bool:
        return bool(self.ids)

    def add(self, sid: str, at: datetime) -> None:
        self.ids.add(sid)
        self.local[sid] = at

    async def load(self, db: Database, now: datetime) -> bool:
        """Re-read from the database; True when the set grew (another replica revoked something)."""
        since = now - self.keep
        async with db.session() as session:
            rows = set((await session.execute(select(AuthSession.id).where(
                AuthSession.revoked_at.is_not(None), AuthSession.revoked_at > since))).scalars())
        self.local = {k: v for k, v in self.local.items() if v > since}
        grew = bool(rows - self.ids)
        self.ids = rows | set(self.local)
        return grew


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _refresh_token(session_id: str) -> tuple[str, str]:
    secret = secrets.token_urlsafe(32)
    return f"{session_id}.{secret}", _digest(secret)


def grant_error(code: str, zh: str, en: str, field: str = "refresh_token", status: int = 400) -> Problem:
    return Problem(status, code, (zh, en), errors=[field_error(field, code, zh, en)], extra={"error": "invalid_grant"})


def amr_of(sess: AuthSession) -> list[str]:
    return list(sess.amr) if sess.amr else (["pwd", "otp"] if sess.mfa else ["pwd"])


class Sessions:
    def __init__(self, db: Database, issuer, revoked: RevokedSessions, *, access_ttl: int, idle_seconds: float,
                 absolute_seconds: float, kiosk_idle_seconds: float) -> None:
        self.db, self.issuer, self.revoked = db, issuer, revoked
        self.access_ttl = access_ttl
        self.idle = timedelta(seconds=idle_seconds)
        self.kiosk_idle = timedelta(seconds=kiosk_idle_seconds)
        self.absolute = timedelta(seconds=absolute_seconds)

    def idle_of(self, kiosk_device: str | None) -> timedelta:
        """How long a session may go unused: a kiosk's few minutes, else the platform's idle time."""
        return self.kiosk_idle if kiosk_device else self.idle

    def access(self, user: User, sess: AuthSession, now: datetime, amr: list[str] | None = None) -> dict:
        """An access token of the session, from the account as it is `now` (e.g. just real-name bound). It never
        outlives the session's absolute end (a proxy authorisation's expiry, a kiosk session's few minutes) nor its
        idle end (a kiosk's token lives its idle time: left unused, no token of the session is good past it);
        `acting_for` comes only from the session's proxy authorisation."""
        left = int((min(sess.expires_at, sess.idle_expires_at) - now).total_seconds())
        extra = {"sid": sess.id, "amr": amr or amr_of(sess)}
        if sess.acting_for:
            extra.update(proxy_authorisation=sess.proxy_id, acting_actions=list(sess.acting_actions or []))
        if sess.kiosk_device:
            extra["kiosk_device"] = sess.kiosk_device
        return self.issuer.issue(subject=user.username, member=sess.member, role=user.role,
                                 scopes=list(user.scopes or []), acting_for=sess.acting_for, name=user.display_name,
                                 ttl=max(1, min(self.access_ttl, left)), extra=extra)

    def _tokens(self, user: User, sess: AuthSession, refresh: str, amr: list[str], now: datetime) -> dict:
        out = self.access(user, sess, now, amr)
        out.update(refresh_token=refresh, session_id=sess.id)
        return out

    async def start(self, user: User, member: str, now: datetime, *, source: str | None, user_agent: str | None,
                    mfa: bool, amr: list[str] | None = None, proxy=None, kiosk_device: str | None = None,
                    lifetime: timedelta | None = None) -> dict:
        """`proxy`: the ProxyAuthorisation the session acts under (it ends with it); `kiosk_device`, `lifetime`:
        a kiosk's short session (and its idle time, `idle_of`)."""
        amr = amr or (["pwd", "otp"] if mfa else ["pwd"])
        sid = new_id()
        token, digest = _refresh_token(sid)
        ends = now + (lifetime or self.absolute)
        if proxy is not None:
            ends = min(ends, proxy.expires_at)
        async with self.db.session() as session, session.begin():
            sess = AuthSession(id=sid, username=user.username, member=member, source=(source or "")[:64] or None,
                               user_agent=(user_agent or "")[:200] or None, created_at=now, last_used_at=now,
                               idle_expires_at=min(ends, now + self.idle_of(kiosk_device)), expires_at=ends, mfa=mfa,
                               amr=amr, proxy_id=proxy.id if proxy is not None else None,
                               acting_for=proxy.person_id if proxy is not None else None,
                               acting_actions=list(proxy.actions) if proxy is not None else None,
                               kiosk_device=kiosk_device)
            session.add(sess)
            await session.flush()
            session.add(RefreshToken(token_hash=digest, session_id=sid, issued_at=now))
            after = {"session": sid, "member": member, "mfa": mfa, "amr": amr}
            if proxy is not None:
                after.update(proxy_authorisation=proxy.id, acting_for=proxy.person_id)
            if kiosk_device:
                after["kiosk_device"] = kiosk_device
            session.add(entry(now=now, actor=user.username, actor_role=user.role, action="session.start",
                              target=user.username, place=place_of(user.scopes), source=source, after=after))
        return self._tokens(user, sess, token, amr, now)

    async def refresh(self, token: str, now: datetime, *, client_id: str | None, source: str | None) -> dict:
        sid, _, secret = (token or "").partition(".")
        if not sid or not secret:
            raise grant_error("refresh_token.invalid", "刷新令牌无效", "Invalid refresh token")
        digest = _digest(secret)
        async with self.db.session() as session, session.begin():
            row = await session.get(RefreshToken, digest)
            sess = await session.get(AuthSession, sid)
            if row is None or sess is None or row.session_id != sid:
                raise grant_error("refresh_token.invalid", "刷新令牌无效", "Invalid refresh token")
            user = await session.get(User, sess.username)
            if sess.revoked_at is not None:
                raise grant_error("session.revoked", "该会话已注销，请重新登录", "This session was signed out; sign in again")
            if client_id and client_id != sess.member:
                raise grant_error("refresh_token.invalid", "刷新令牌不属于该应用", "The refresh token belongs to another client")
            if row.used_at is not None:
                # a replay: the token was rotated already; whoever holds a copy, the family ends
                await self._revoke(session, sess, now, "reuse", actor=sess.username, actor_role=user.role,
                                   source=source)
                log.warning("refresh token reused: session revoked", extra={
                    "event": "auth.refresh_reuse", "username": sess.username, "session": sid, "source": source})
                reuse, disabled = True, False
            else:
                reuse = False
                if now >= sess.idle_expires_at or now >= sess.expires_at:
                    raise grant_error("refresh_token.expired", "会话已过期，请重新登录", "The session expired; sign in again")
                ended = await self._proxy_ended(session, sess, now)
                if ended:
                    await self._revoke(session, sess, now, "proxy_ended", actor=sess.username, actor_role="-",
                                       source=source)
                if user is None or user.status != "active" or ended:
                    if not ended:
                        await self._revoke(session, sess, now, "disabled", actor=sess.username, actor_role="-",
                                           source=source)
                    disabled = ("proxy" if ended else True)
                else:
                    disabled = False
                    # one use only, whatever races: the first to mark it used wins
                    done = await session.execute(update(RefreshToken).where(
                        RefreshToken.token_hash == digest, RefreshToken.used_at.is_(None)).values(used_at=now))
                    if done.rowcount != 1:
                        raise grant_error("refresh_token.reused", "刷新令牌已被使用", "The refresh token was used already")
                    new, new_digest = _refresh_token(sid)
                    session.add(RefreshToken(token_hash=new_digest, session_id=sid, issued_at=now))
                    sess.last_used_at = now
                    sess.idle_expires_at = min(sess.expires_at, now + self.idle_of(sess.kiosk_device))
                    out = self._tokens(user, sess, new, amr_of(sess), now)
        if reuse:
            raise grant_error("refresh_token.reused", "刷新令牌已被使用过：为安全起见，该会话已全部注销，请重新登录",
                              "The refresh token was used before: the whole session is signed out; sign in again")
        if disabled == "proxy":
            raise grant_error("proxy.ended", "代办授权已过期或已撤销，请重新登录", "The proxy authorisation expired or "
                              "was revoked; sign in again", status=400)
        if disabled:
            raise grant_error("account.disabled", "账号已停用", "The account is disabled", field="username",
                              status=400)
        return out

    @staticmethod
    async def _proxy_ended(session, sess: AuthSession, now: datetime) -> bool:
        if not sess.proxy_id:
            return False
        from gateway.accounts.models import ProxyAuthorisation

        auth = await session.get(ProxyAuthorisation, sess.proxy_id)
        return auth is None or auth.revoked_at is not None or now >= auth.expires_at

    async def _revoke(self, session, sess: AuthSession, now: datetime, reason: str, *, actor: str,
                      actor_role: str, source: str | None = None) -> None:
        if sess.revoked_at is None:
            sess.revoked_at, sess.revoked_reason = now, reason
            session.add(entry(now=now, actor=actor, actor_role=actor_role, action="session.revoke",
                              target=sess.username, source=source, after={"session": sess.id, "reason": reason}))
        self.revoked.add(sess.id, now)

    async def revoke(self, session, sessions: list[AuthSession], now: datetime, reason: str, *, actor: str,
                     actor_role: str, source: str | None = None) -> list[str]:
        for s in sessions:
            await self._revoke(session, s, now, reason, actor=actor, actor_role=actor_role, source=source)
        return [s.id for s in sessions]

    async def revoke_user(self, session, username: str, now: datetime, reason: str, *, actor: str,
                          actor_role: str, source: str | None = None, keep: str | None = None) -> list[str]:
        rows = (await session.execute(select(AuthSession).where(
            AuthSession.username == username, AuthSession.revoked_at.is_(None)))).scalars().all()
        return await self.revoke(session, [r for r in rows if r.id != keep], now, reason, actor=actor,
                                 actor_role=actor_role, source=source)

    async def by_refresh_token(self, session, token: str) -> AuthSession | None:
        sid, _, secret = (token or "").partition(".")
        if not sid or not secret:
            return None
        row = await session.get(RefreshToken, _digest(secret))
        if row is None or row.session_id != sid:
            return None
        return await session.get(AuthSession, sid)


async def changed_at_edge(app) -> None:
    from gateway.edge.link import edge_changed

    await edge_changed(app)
