"""Proxy authorisations (代办授权): who may let a helper (代办员, a user of role proxy) act for a person, and what a
helper's session gets from it. The one place this rule is written:

| who | may authorise | may see and revoke |
|---|---|---|
| the person (a resident signed in, scope `person:P`) | a helper for P, basis `self` | P's records |
| community / street staff | a helper of their place for a person they may read in svc_residents, only on the person's written consent (`consent_ref`), basis `consent` | records of helpers of their place |
| the helper | nothing | their own records (and may step down: revoke) |
| platform operations | nothing | every record (revoke too) |

Anyone else: 403 `proxy.not_allowed`; a record outside what the caller may see is 404, as an unknown one.
A record works from `starts_at` until `expires_at` or its revocation, whichever comes first: a helper's session
opened under it ends then (its access tokens never outlive the record; a revocation revokes the sessions at
once, refused by the gateway and every service; a refresh after the expiry is refused). Every act (grant,
revoke, use at sign-in, each refusal) is a row of the account audit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select

from common import acting
from common.auth import Principal
from common.errors import Problem, invalid
from common.ids import new_id
from gateway.accounts import policy
from gateway.accounts.audit import entry, place_of, record_refusal
from gateway.accounts.models import AuthSession, ProxyAuthorisation
from gateway.members.models import User

# what a helper may do for the person: the acts of common.acting (the services check them), or a group of them
# (`requests` = every requests.* act); a record keeps the acts themselves, carried in the token as `acting_actions`
NAMES = {**{g: f"{g}.* 全部：" + "、".join(acting.ACTIONS[a][0] for a in acts) for g, acts in acting.GROUPS.items()},
         **{a: f"{zh} {en}" for a, (zh, en) in acting.ACTIONS.items()}}
MAX_DAYS = 366
STAFF_ROLES = ("community_staff", "street_staff")


@dataclass
class Ctx:
    parts: object  # gateway.accounts.deps.AccountParts
    principal: Principal
    now: datetime
    source: str | None
    bearer: str | None  # the caller's own token: svc_residents decides whether staff may read the person


def status_of(a: ProxyAuthorisation, now: datetime) -> str:
    if a.revoked_at is not None:
        return "revoked"
    if now >= a.expires_at:
        return "expired"
    return "active" if now >= a.starts_at else "scheduled"


def valid(a: ProxyAuthorisation | None, now: datetime) -> bool:
    return a is not None and status_of(a, now) == "active"


def own_person(principal: Principal) -> str | None:
    return next((s.partition(":")[2] for s in principal.scopes if s.startswith("person:")), None)


def _staff(principal: Principal) -> bool:
    return principal.role in STAFF_ROLES


def may_see(principal: Principal, a: ProxyAuthorisation) -> bool:
    if principal.role == "ops":
        return True
    if principal.role == "resident" and own_person(principal) == a.person_id:
        return True
    if principal.role == "proxy" and principal.user == a.helper:
        return True
    if _staff(principal):
        return bool(a.place) and any(a.place.startswith(p) for p in policy.places(principal.scopes))
    return False


def not_found() -> Problem:
    return Problem(404, "proxy.not_found", ("代办授权不存在", "Unknown proxy authorisation"))


def not_allowed() -> Problem:
    return Problem(403, "proxy.not_allowed", ("只有本人或（凭本人书面授权的）社区、街道工作人员可以授权代办",
                                              "Only the person, or community or street staff on the person's "
                                              "written consent, may authorise a helper"))


async def _refused(ctx: Ctx, action: str, p: Problem, target: str | None) -> Problem:
    await record_refusal(ctx.parts.db, now=ctx.now, actor=ctx.principal.user, actor_role=ctx.principal.role,
                         action=action, target=target, code=p.code if p.code != "validation_failed"
                         else (p.errors or [{}])[0].get("code", p.code), source=ctx.source)
    return p


async def _person_readable(ctx: Ctx, person_id: str) -> bool:
    """Staff may authorise only for a person svc_residents lets them read (the rule lives where the data is)."""
    resp = await ctx.parts.binder.call("GET", f"/residents/v1/persons/{person_id}", lang=None, bearer=ctx.bearer)
    if resp.status_code >= 500:
        raise Problem(503, "upstream_unavailable", ("居民档案服务暂时无法应答，请稍后再试",
                                                    "svc_residents could not answer; try again"))
    return resp.status_code == 200


async def prepare_grant(ctx: Ctx, *, helper: str, person_id: str | None, actions: list[str],
                        starts_at: datetime | None, expires_at: datetime, consent_ref: str | None) -> ProxyAuthorisation:
    """The record the caller may make, checked (each refusal audited) and not yet written: `record_grant` writes
    it in the caller's transaction (the one that also keeps its Idempotency-Key)."""
    p = ctx.principal
    try:
        starts = starts_at or ctx.now
        bad = sorted(a for a in set(actions) if not acting.known(a))
        if not actions or bad:
            raise invalid("actions", "proxy.actions", f"代办事项无效：{', '.join(bad) or '至少一项'}（可选："
                          f"{', '.join(NAMES)}）", f"Unknown actions {bad or '(none given)'}; one of {list(NAMES)}")
        if expires_at <= starts or expires_at <= ctx.now:
            raise invalid("expires_at", "proxy.expiry", "截止时间须晚于开始时间和当前时间",
                          "expires_at must be after starts_at and now")
        if expires_at - starts > timedelta(days=MAX_DAYS):
            raise invalid("expires_at", "proxy.too_long", "代办授权最长一年，到期可续",
                          "A proxy authorisation lasts a year at most; renew it then")
        if p.role == "resident" and p.claims.get("sid"):
            mine = own_person(p)
            if mine is None:
                raise Problem(403, "proxy.binding_required", ("请先完成实名认证", "Bind your real name first"))
            if person_id not in (None, mine):
                raise invalid("person_id", "proxy.not_own_person", "居民只能为本人授权代办",
                              "A resident authorises helpers for themselves only", status=403)
            person_id, basis = mine, "self"
        elif _staff(p):
            if not person_id:
                raise invalid("person_id", "proxy.person_required", "须指明被代办的居民", "person_id is required")
            if not (consent_ref or "").strip():
                raise invalid("consent_ref", "proxy.consent_required", "工作人员代为授权须登记本人书面授权书编号",
                              "Staff record the person's written consent (consent_ref)")
            basis = "consent"
        else:
            raise not_allowed()
        async with ctx.parts.db.session() as session:
            user = await session.get(User, helper)
        if user is None or user.role != "proxy" or user.status != "active":
            raise invalid("helper", "proxy.helper_unknown", "该账号不是在册的代办员", "Not a registered helper")
        place = place_of(user.scopes)
        if basis == "consent":
            if not place or not any(place.startswith(m) for m in policy.places(p.scopes)):
                raise invalid("helper", "proxy.helper_outside", "该代办员不在您的管辖范围", "The helper is not of your place",
                              status=403)
            if not await _person_readable(ctx, person_id):
                raise Problem(404, "proxy.person_not_found", ("居民不存在或不在您的管辖范围",
                                                              "Unknown person, or not one of your place"))
        return ProxyAuthorisation(id=new_id(), helper=helper, person_id=person_id,
                                  actions=sorted(acting.expand(actions)), starts_at=starts, expires_at=expires_at,
                                  basis=basis, consent_ref=(consent_ref or "").strip() or None, place=place,
                                  granted_by=p.user, granted_by_role=p.role, created_at=ctx.now)
    except Problem as problem:
        raise await _refused(ctx, "proxy.grant", problem, helper) from None


def record_grant(session, ctx: Ctx, a: ProxyAuthorisation) -> None:
    session.add(a)
    session.add(entry(now=ctx.now, actor=ctx.principal.user, actor_role=ctx.principal.role, action="proxy.grant",
                      target=a.helper, place=a.place, source=ctx.source, after=_audit(a)))


def _audit(a: ProxyAuthorisation) -> dict:
    return {"proxy_authorisation": a.id, "helper": a.helper, "person_id": a.person_id, "actions": a.actions,
            "starts_at": a.starts_at.isoformat(), "expires_at": a.expires_at.isoformat(), "basis": a.basis,
            "consent_ref": a.consent_ref}


async def listing(ctx: Ctx, *, limit: int, after: str | None) -> list[ProxyAuthorisation]:
    p = ctx.principal
    q = select(ProxyAuthorisation).order_by(ProxyAuthorisation.id)
    if after:
        q = q.where(ProxyAuthorisation.id > after)
    if p.role == "resident":
        q = q.where(ProxyAuthorisation.person_id == (own_person(p) or "-"))
    elif p.role == "proxy":
        q = q.where(ProxyAuthorisation.helper == p.user)
    elif _staff(p):
        mine = policy.places(p.scopes) or ["-"]
        q = q.where(or_(*[ProxyAuthorisation.place.startswith(m) for m in mine]))
    elif p.role != "ops":
        raise await _refused(ctx, "proxy.read", not_allowed(), None)
    async with ctx.parts.db.session() as session:
        return list((await session.execute(q.limit(limit))).scalars())


async def read(ctx: Ctx, auth_id: str) -> ProxyAuthorisation:
    async with ctx.parts.db.session() as session:
        a = await session.get(ProxyAuthorisation, auth_id)
    if a is None or not may_see(ctx.principal, a):
        raise not_found()
    return a


async def revoke(ctx: Ctx, auth_id: str) -> tuple[ProxyAuthorisation, list[str]]:
    """Ends the record and, at once, the helper's sessions opened under it."""
    p = ctx.principal
    try:
        async with ctx.parts.db.session() as session, session.begin():
            a = await session.get(ProxyAuthorisation, auth_id, with_for_update=True)
            if a is None or not may_see(p, a):
                raise not_found()
            if a.revoked_at is not None:
                raise Problem(409, "proxy.revoked", ("该代办授权已撤销", "This authorisation was revoked already"))
            before = {"status": status_of(a, ctx.now)}
            a.revoked_at, a.revoked_by = ctx.now, p.user
            rows = (await session.execute(select(AuthSession).where(
                AuthSession.proxy_id == a.id, AuthSession.revoked_at.is_(None)))).scalars().all()
            ids = await ctx.parts.sessions.revoke(session, list(rows), ctx.now, "proxy_revoked", actor=p.user,
                                                  actor_role=p.role, source=ctx.source)
            session.add(entry(now=ctx.now, actor=p.user, actor_role=p.role, action="proxy.revoke", target=a.helper,
                              place=a.place, source=ctx.source, before=before,
                              after={"proxy_authorisation": a.id, "status": "revoked", "sessions": ids}))
    except Problem as problem:
        raise await _refused(ctx, "proxy.revoke", problem, auth_id) from None
    if ids:
        await ctx.parts.edge_changed()
    return a, ids


async def for_sign_in(parts, user: User, acting_for: str | None, now: datetime, *, source: str | None):
    """The record a helper's new session acts under: the one for `acting_for`, or the only valid one; None for
    anyone not a helper or a helper with none valid. Asking for a person without a valid record is refused."""
    if user.role != "proxy":
        if acting_for:
            raise invalid("acting_for", "proxy.not_helper", "只有代办员可以代他人登录",
                          "Only helpers act for others", status=403)
        return None
    async with parts.db.session() as session:
        rows = [a for a in (await session.execute(select(ProxyAuthorisation).where(
            ProxyAuthorisation.helper == user.username, ProxyAuthorisation.expires_at > now,
            ProxyAuthorisation.revoked_at.is_(None)))).scalars() if valid(a, now)]
    if acting_for:
        rows = [a for a in rows if a.person_id == acting_for]
        if not rows:
            raise invalid("acting_for", "proxy.not_authorised", "您没有代办该居民的有效授权（未授权、已过期或已撤销）",
                          "No valid authorisation to act for this person (none, expired or revoked)", status=403)
    if len(rows) != 1:
        return None  # several people: the helper names one (acting_for); none: a session of the helper's own
    a = rows[0]
    async with parts.db.session() as session, session.begin():
        session.add(entry(now=now, actor=user.username, actor_role=user.role, action="proxy.use",
                          target=user.username, place=a.place, source=source,
                          after={"proxy_authorisation": a.id, "acting_for": a.person_id}))
    return a
