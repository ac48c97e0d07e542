"""Account management by administrators in scope, with every change and refusal audited."""
from __future__ import annotations

from datetime import datetime

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from common.errors import Problem
from gateway.accounts import policy
from gateway.accounts.audit import entry, place_of, record_refusal, snapshot
from gateway.accounts.models import AccountAudit, RecoveryCode, TotpFactor
from gateway.accounts.passwords import check_password
from gateway.accounts.schemas import AccountCreate, AccountOut, AccountUpdate
from gateway.identity.tokens import hash_secret
from gateway.members.models import User


class Ctx:
    """One administrator's call: who, from where, when, and the app's parts."""

    def __init__(self, parts, principal, now: datetime, source: str | None) -> None:
        self.parts, self.principal, self.now, self.source = parts, principal, now, source
        self.db = parts.db
        self.admin: User | None = None

    def done(self, action: str, user: User, **change) -> AccountAudit:
        """The audit entry of this administrator's change to `user`, placed where the account belongs."""
        return entry(now=self.now, actor=self.admin.username, actor_role=self.admin.role, action=action,
                     target=user.username, place=place_of(user.scopes), source=self.source, **change)

    async def managed(self, session, username: str) -> User:
        """The account this administrator may manage (policy.check_target), from this transaction."""
        user = await session.get(User, username)
        policy.check_target(self.admin, user)
        return user

    async def refused(self, action: str, problem: Problem, target: str | None = None, place: str | None = None):
        await record_refusal(self.db, now=self.now, actor=self.principal.user, actor_role=self.principal.role,
                             action=action, target=target, place=place, code=problem.code, source=self.source)
        return problem


async def load_admin(ctx: Ctx, action: str, target: str | None = None) -> User:
    async with ctx.db.session() as session:
        admin = await session.get(User, ctx.principal.user)
    if admin is None or policy.level(admin) is None or admin.role != ctx.principal.role:
        raise await ctx.refused(action, Problem(403, "account.not_admin", (
            "只有管理员可以管理账号", "Only administrators manage accounts")), target)
    ctx.admin = admin
    return admin


async def _mfa_enrolled(session, username: str) -> bool:
    f = await session.get(TotpFactor, username)
    return f is not None and f.enabled_at is not None


async def out(session, user: User) -> AccountOut:
    o = AccountOut.model_validate(user)
    o.mfa_enrolled = await _mfa_enrolled(session, user.username)
    return o


async def run(ctx: Ctx, action: str, target: str | None, work):
    """`work(session)` in one transaction; a Problem it raises is audited (as refused) after the rollback."""
    try:
        async with ctx.db.session() as session, session.begin():
            return await work(session)
    except Problem as p:
        place = None
        if p.status != 404 and target:
            async with ctx.db.session() as session:
                u = await session.get(User, target)
                place = place_of(u.scopes) if u else None
        raise await ctx.refused(action, p, target, place) from None


async def create_account(ctx: Ctx, body: AccountCreate) -> AccountOut:
    admin = await load_admin(ctx, "account.create", body.username)
    try:
        policy.check_grant(admin, body.role, body.scopes, body.admin)
        check_password(body.password, username=body.username)
    except Problem as p:
        raise await ctx.refused("account.create", p, body.username, place_of(body.scopes)) from None
    hashed = await run_in_threadpool(hash_secret, body.password)

    async def work(session):
        if await session.get(User, body.username) is not None:
            raise Problem(409, "account.exists", ("该用户名已被使用", "This username is taken"))
        user = User(username=body.username, display_name=body.display_name, password_hash=hashed, role=body.role,
                    scopes=body.scopes, admin=body.admin, member_code="portal", status="active", created_at=ctx.now,
                    version=1, updated_at=ctx.now)
        session.add(user)
        await session.flush()
        session.add(ctx.done("account.create", user, after=snapshot(user)))
        return await out(session, user)

    return await run(ctx, "account.create", body.username, work)


async def get_account(ctx: Ctx, username: str) -> AccountOut:
    admin = await load_admin(ctx, "account.read", username)

    async def work(session):
        user = await session.get(User, username)
        if user is None or not policy.in_place(admin, user.scopes):
            raise policy.not_found()
        return await out(session, user)

    return await run(ctx, "account.read", username, work)


async def list_accounts(ctx: Ctx, *, limit: int, after: str | None) -> list[AccountOut]:
    admin = await load_admin(ctx, "account.list")
    async with ctx.db.session() as session:
        q = select(User).order_by(User.username)
        if after:
            q = q.where(User.username > after)
        found = []
        for user in (await session.execute(q)).scalars():
            if policy.level(admin) == "platform" or (
                    policy.in_place(admin, user.scopes) and user.username != admin.username):
                found.append(await out(session, user))
                if len(found) > limit:
                    break
        return found


async def update_account(ctx: Ctx, username: str, body: AccountUpdate) -> AccountOut:
    admin = await load_admin(ctx, "account.update", username)
    sent = body.model_fields_set - {"version"}
    hashed = None
    if body.password is not None:
        try:
            check_password(body.password, username=username)
        except Problem as p:
            raise await ctx.refused("account.update", p, username) from None
        hashed = await run_in_threadpool(hash_secret, body.password)

    async def work(session):
        user = await ctx.managed(session, username)
        if user.version != body.version:
            raise Problem(409, "version_conflict", ("账号已被他人修改，请刷新后重试",
                                                    "The account changed meanwhile; reload and retry"),
                          extra={"current_version": user.version})
        before = snapshot(user)
        role = body.role if "role" in sent and body.role else user.role
        scopes = body.scopes if "scopes" in sent and body.scopes is not None else list(user.scopes or [])
        is_admin = body.admin if "admin" in sent and body.admin is not None else bool(user.admin)
        if sent & {"role", "scopes", "admin"}:
            policy.check_grant(admin, role, scopes, is_admin)
        user.role, user.scopes, user.admin = role, scopes, is_admin
        if "display_name" in sent and body.display_name:
            user.display_name = body.display_name
        if "status" in sent and body.status:
            user.status = body.status
        if hashed is not None:
            user.password_hash = hashed
        user.version += 1
        user.updated_at = ctx.now
        after = snapshot(user)
        if hashed is not None:
            after["password_changed"] = True
        session.add(ctx.done("account.update", user, before=before, after=after))
        revoked = []
        # a disabled account, new rights or a new password: its sessions end (tokens carry the old rights)
        if user.status != "active" or sent & {"role", "scopes", "admin", "status"} or hashed is not None:
            revoked = await ctx.parts.sessions.revoke_user(
                session, user.username, ctx.now, "admin", actor=admin.username, actor_role=admin.role,
                source=ctx.source)
        return await out(session, user), revoked

    result, revoked = await run(ctx, "account.update", username, work)
    if revoked:
        await ctx.parts.edge_changed()
    return result


async def unlock(ctx: Ctx, username: str) -> AccountOut:
    """End the account's sign-in back-off (gateway/identity/throttle.py) at once."""
    await load_admin(ctx, "account.unlock", username)

    async def work(session):
        user = await ctx.managed(session, username)
        session.add(ctx.done("account.unlock", user))
        return await out(session, user)

    result = await run(ctx, "account.unlock", username, work)
    await ctx.parts.throttle.unlock(username)
    return result


async def reset_mfa(ctx: Ctx, username: str) -> AccountOut:
    """A lost authenticator: the factor and recovery codes go, sessions end; the next sign-in enrols again."""
    admin = await load_admin(ctx, "account.reset_mfa", username)

    async def work(session):
        from sqlalchemy import delete

        user = await ctx.managed(session, username)
        had = await _mfa_enrolled(session, username)
        await session.execute(delete(TotpFactor).where(TotpFactor.username == username))
        await session.execute(delete(RecoveryCode).where(RecoveryCode.username == username))
        await ctx.parts.sessions.revoke_user(session, username, ctx.now, "admin", actor=admin.username,
                                                 actor_role=admin.role, source=ctx.source)
        session.add(ctx.done("account.reset_mfa", user, before={"mfa_enrolled": had}, after={"mfa_enrolled": False}))
        return await out(session, user)

    result = await run(ctx, "account.reset_mfa", username, work)
    await ctx.parts.edge_changed()
    return result


async def audit_rows(ctx: Ctx, *, target: str | None, limit: int, before_id: str | None) -> list[AccountAudit]:
    """The audit of accounts in the administrator's place (platform administrators: all of it)."""
    admin = await load_admin(ctx, "audit.read", target)
    async with ctx.db.session() as session:
        q = select(AccountAudit).order_by(AccountAudit.id.desc())
        if target:
            q = q.where(AccountAudit.target == target)
        if before_id:
            q = q.where(AccountAudit.id < before_id)
        if policy.level(admin) != "platform":
            mine = policy.admin_places(admin)
            from sqlalchemy import or_

            q = q.where(or_(*[AccountAudit.place.startswith(p) for p in mine]))
        return list((await session.execute(q.limit(limit + 1))).scalars())

