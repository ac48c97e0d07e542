"""Rules of the exchange: catalogue upkeep, grant applications and decisions, deadlines, who may see the log."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.db import Database
from common.errors import Problem, invalid
from common.lookup import get_or_404
from common.ids import new_id
from common.outbox import record_event
from gateway.base import OutboxEvent
from gateway.exchange.catalogue_data import BUILTIN_RESOURCES
from gateway.exchange.models import Grant, Resource
from gateway.exchange.policy import ExchangePolicy
from gateway.exchange.schemas import GrantApply, GrantApprove, GrantOut
from gateway.exchange.workdays import add_working_days

CHECK_WORKING_DAYS = 2   # 形式审查
REPLY_WORKING_DAYS = 5   # 资源提供方答复


async def ensure_catalogue(db: Database, now: datetime) -> None:
    """Insert the built-in catalogue entries that are missing (never overwrites an edited entry)."""
    async with db.session() as session:
        have = set((await session.execute(select(Resource.code))).scalars())
    missing = [r for r in BUILTIN_RESOURCES if r["code"] not in have]
    if not missing:
        return
    try:
        async with db.session() as session, session.begin():
            for r in missing:
                resource = Resource(**r, created_at=now, updated_at=now)
                session.add(resource)
                item_event(session, resource, shared=False, now=now)
    except IntegrityError:
        pass  # another replica seeded them first


CATALOGUE_DERIVED = ("name", "description", "methods", "fields", "owner", "sharing_class", "service", "path_prefix",
                     "xroad_member_class", "xroad_subsystem", "xroad_service")


async def sync_catalogue(db: Database, resources: list[dict], now: datetime) -> dict[str, list[str]]:
    """Write the derived catalogue: new resources inserted (with their `exchange.item`), changed ones updated."""
    added, changed = [], []
    async with db.session() as session, session.begin():
        for r in resources:
            row = await session.get(Resource, r["code"])
            if row is None:
                row = Resource(**{k: v for k, v in r.items() if k in CATALOGUE_DERIVED or k == "code"},
                               created_at=now, updated_at=now)
                session.add(row)
                item_event(session, row, shared=False, now=now)
                added.append(r["code"])
                continue
            diff = {k: r[k] for k in CATALOGUE_DERIVED if k in r and getattr(row, k) != r[k]}
            if diff:
                for k, v in diff.items():
                    setattr(row, k, v)
                row.updated_at = now
                changed.append(r["code"])
    return {"added": added, "changed": changed}


async def refresh_catalogue(db: Database, aggregate, policy: ExchangePolicy, now: datetime) -> dict:
    """Fetch every upstream's OpenAPI, derive the catalogue with the annotations, write it, reload the policy."""
    from gateway.exchange.derive import derive_catalogue

    fetched = await aggregate.fetch_all()
    docs, seen_urls = {}, set()
    for name, doc in fetched.items():  # one document per upstream address (open311 is svc_services again)
        url = aggregate.upstreams[name].base_url
        if url not in seen_urls:
            seen_urls.add(url)
            docs[name] = doc
    d = derive_catalogue(BUILTIN_RESOURCES, docs)
    written = await sync_catalogue(db, d.resources, now)
    await load_policy(db, policy, now)
    return {"answered": d.answered, "missing": d.missing, "unmatched": d.unmatched,
            "from_extension": d.from_extension, **written, "resources": len(d.resources)}


async def load_policy(db: Database, policy: ExchangePolicy, now: datetime) -> None:
    generation = policy.generation
    async with db.session() as session:
        resources = (await session.execute(select(Resource))).scalars().all()
        grants = (await session.execute(
            select(Grant).where(Grant.status == "approved", or_(Grant.expires_at.is_(None), Grant.expires_at > now))
            .order_by(Grant.decided_at))).scalars().all()
    if policy.generation != generation:
        return  # changed locally meanwhile; the next refresh reads the newer state
    policy.load_resources(resources)
    policy.load_grants(grants)


def item_event(session: AsyncSession, resource: Resource, *, shared: bool, now: datetime) -> None:
    """`exchange.item` for svc_metrics' data-sharing rate (数据互通率): one data item per catalogue resource;
    `required` = it is meant to be shared (unconditional or conditional), `shared` = at least one other member
    holds a live grant for it now. Sent when a resource enters the catalogue and whenever a grant decision may
    change `shared` (approval, automatic approval, revocation, supersession); svc_metrics keeps the latest state."""
    record_event(session, OutboxEvent, "exchange.item", subject=resource.code, now=now,
                 data={"item": resource.code, "required": resource.sharing_class != "not_shared",
                       "shared": shared and resource.sharing_class != "not_shared", "owner": resource.owner,
                       "sharing_class": resource.sharing_class})


async def record_item_state(session: AsyncSession, resource_code: str, now: datetime) -> None:
    resource = await session.get(Resource, resource_code)
    if resource is None:
        return
    live = (await session.execute(select(Grant.id).where(
        Grant.resource == resource.code, Grant.status == "approved", Grant.consumer != resource.owner,
        or_(Grant.expires_at.is_(None), Grant.expires_at > now)).limit(1))).first()
    item_event(session, resource, shared=live is not None, now=now)


def grant_out(g: Grant, now: datetime) -> GrantOut:
    """The grant with its deadlines judged: a step done late, or not done and past due, is overdue."""
    out = GrantOut.model_validate(g)
    checked = g.checked_at or g.decided_at
    if checked is not None:
        out.check_overdue = checked > g.check_due_at
    else:
        out.check_overdue = g.status == "pending" and now > g.check_due_at
    if g.decided_at is not None:
        out.reply_overdue = g.decided_at > g.reply_due_at
    else:
        out.reply_overdue = g.status == "pending" and now > g.reply_due_at
    out.overdue = out.check_overdue or out.reply_overdue
    out.live = g.status == "approved" and (g.expires_at is None or now < g.expires_at)
    return out


def _check_fields(resource: Resource, fields: list[str] | None, field_name: str) -> None:
    if fields is None:
        return
    known = {fd["path"] for fd in resource.fields or ()}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise invalid(field_name, "grant.unknown_field", f"资源目录中没有这些字段：{', '.join(unknown)}",
                      f"Fields not in the catalogue entry: {', '.join(unknown)}")


async def apply(session: AsyncSession, body: GrantApply, principal: Principal, now: datetime) -> Grant:
    resource = await session.get(Resource, body.resource)
    if resource is None:
        raise invalid("resource", "grant.unknown_resource", "资源目录中没有这个资源", "No such resource in the catalogue")
    if resource.sharing_class == "not_shared":
        raise invalid("resource", "grant.not_shared", "该资源不予共享，不能申请", "This resource is not shared")
    if resource.owner == principal.member:
        raise invalid("resource", "grant.own_resource", "本单位提供的资源无需申请", "Your member provides this resource")
    if body.expires_at is not None and body.expires_at <= now:
        raise invalid("expires_at", "grant.expiry_in_past", "有效期截止时间必须晚于当前时间",
                      "The expiry must be in the future")
    _check_fields(resource, body.fields, "fields")
    grant = Grant(id=new_id(), resource=resource.code, owner=resource.owner, consumer=principal.member,
                  applicant_user=principal.user, purpose=body.purpose, requested_fields=body.fields,
                  requested_expires_at=body.expires_at, status="pending", applied_at=now,
                  check_due_at=add_working_days(now, CHECK_WORKING_DAYS),
                  reply_due_at=add_working_days(now, REPLY_WORKING_DAYS), version=1)
    if resource.sharing_class == "unconditional":
        # 无条件共享: granted on application, for the fields asked for (all when none named)
        await _supersede(session, grant, now)
        grant.status, grant.fields, grant.expires_at = "approved", body.fields, body.expires_at
        grant.checked_at = grant.decided_at = now
        grant.decided_by = "exchange/unconditional"
    session.add(grant)
    await session.flush()
    if grant.status == "approved":
        await record_item_state(session, resource.code, now)
    return grant


async def _supersede(session: AsyncSession, grant: Grant, now: datetime) -> None:
    """A new approval replaces the member's earlier live grant for the same resource."""
    older = (await session.execute(select(Grant).where(
        Grant.consumer == grant.consumer, Grant.resource == grant.resource, Grant.status == "approved",
        Grant.id != grant.id))).scalars()
    for g in older:
        g.status, g.revoked_at, g.reason = "revoked", now, "superseded 被新的授权取代"
        g.version += 1


async def _owned(session: AsyncSession, grant_id: str, principal: Principal, *, allow_consumer: bool = False,
                 allow_ops: bool = False) -> Grant:
    grant = await get_or_404(session, Grant, grant_id, Problem(404, "grant.not_found", ("授权申请不存在", "No such grant")))
    allowed = principal.member == grant.owner or (allow_consumer and principal.member == grant.consumer) \
        or (allow_ops and principal.role == "ops")
    if not allowed:
        if principal.member == grant.consumer or principal.role == "ops":
            raise Problem(403, "grant.not_owner", ("只有资源提供方可以审批", "Only the resource owner may decide"))
        raise Problem(404, "grant.not_found", ("授权申请不存在", "No such grant"))
    return grant


def _pending(grant: Grant) -> None:
    if grant.status != "pending":
        raise Problem(409, "grant.not_pending", (f"该申请已处理（{grant.status}）",
                                                 f"This application was already decided ({grant.status})"))


async def check(session: AsyncSession, grant_id: str, principal: Principal, now: datetime) -> Grant:
    grant = await _owned(session, grant_id, principal)
    _pending(grant)
    if grant.checked_at is None:
        grant.checked_at = now
        grant.version += 1
    return grant


async def approve(session: AsyncSession, grant_id: str, body: GrantApprove, principal: Principal,
                  now: datetime) -> Grant:
    grant = await _owned(session, grant_id, principal)
    _pending(grant)
    resource = await session.get(Resource, grant.resource)
    if body.expires_at <= now:
        raise invalid("expires_at", "grant.expiry_in_past", "有效期截止时间必须晚于当前时间",
                      "The expiry must be in the future")
    _check_fields(resource, body.fields, "fields")
    await _supersede(session, grant, now)
    grant.status, grant.fields, grant.expires_at = "approved", sorted(set(body.fields)), body.expires_at
    grant.checked_at = grant.checked_at or now
    grant.decided_at, grant.decided_by = now, principal.caller
    grant.version += 1
    await session.flush()
    await record_item_state(session, grant.resource, now)
    return grant


async def refuse(session: AsyncSession, grant_id: str, reason: str, principal: Principal, now: datetime) -> Grant:
    grant = await _owned(session, grant_id, principal)
    _pending(grant)
    grant.status, grant.reason = "refused", reason
    grant.checked_at = grant.checked_at or now
    grant.decided_at, grant.decided_by = now, principal.caller
    grant.version += 1
    return grant


async def revoke(session: AsyncSession, grant_id: str, reason: str | None, principal: Principal,
                 now: datetime) -> Grant:
    grant = await _owned(session, grant_id, principal, allow_consumer=True, allow_ops=True)
    if grant.status not in ("approved", "pending"):
        raise Problem(409, "grant.not_live", (f"该授权已是{grant.status}状态", f"This grant is already {grant.status}"))
    was_live = grant.status == "approved"
    grant.status, grant.revoked_at = "revoked", now
    grant.reason = reason or grant.reason
    grant.version += 1
    if was_live:
        await session.flush()
        await record_item_state(session, grant.resource, now)
    return grant
