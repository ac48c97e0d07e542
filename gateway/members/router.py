"""Members of the exchange (成员单位): register, rotate the secret, revoke (takes effect at once)."""
from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from common.deps import DbSession
from gateway.deps import CertPins, Edge, RevokedMembers
from common.auth import Principal, require_roles
from common.clock import Clock, get_clock
from common.errors import Problem
from common.lookup import get_or_404
from common.outbox import record_event
from gateway.identity.tokens import hash_secret
from gateway.members.models import Member
from gateway.members.schemas import MemberCreate, MemberCredentials, MemberOut, MemberUpdate
from gateway.base import OutboxEvent
from gateway.edge.link import notify

router = APIRouter(prefix="/exchange/v1/members", tags=["exchange 数据交换"])
ops_only = require_roles("ops")


@router.get("", response_model=list[MemberOut], summary="成员单位列表 List members")
async def list_members(session: DbSession, principal: Principal = Depends(require_roles("ops", "evaluator"))):
    rows = (await session.execute(select(Member).order_by(Member.code))).scalars()
    return [MemberOut.model_validate(m) for m in rows]


@router.post("", status_code=201, response_model=MemberCredentials, summary="登记成员单位 Register a member")
async def create_member(session: DbSession, body: MemberCreate, pins: CertPins, edge: Edge, principal: Principal = Depends(ops_only),
                        clock: Clock = Depends(get_clock)):
    secret = secrets.token_urlsafe(32)
    hashed = await run_in_threadpool(hash_secret, secret)
    async with session.begin():
        if await session.get(Member, body.code) is not None:
            raise Problem(409, "member.exists", ("该成员单位编码已存在", "A member with this code exists"))
        now = clock.now()
        member = Member(code=body.code, name=body.name, kind=body.kind, role=body.role, scopes=body.scopes,
                        secret_hash=hashed, secret_rotated_at=now, status="active", created_at=now,
                        client_cert_sha256=body.client_cert_sha256)
        session.add(member)
        record_event(session, OutboxEvent, "member.joined", subject=member.code, now=now,
                     data={"kind": member.kind, "name": member.name})
    pins.set(member.code, member.client_cert_sha256)
    await notify(edge)
    return MemberCredentials(member=MemberOut.model_validate(member), client_id=member.code, client_secret=secret)


async def _member(session, code: str) -> Member:
    return await get_or_404(session, Member, code, Problem(404, "member.not_found", ("成员单位不存在", "Unknown member")))


@router.patch("/{code}", response_model=MemberOut, summary="修改成员单位 Update a member",
              description="名称、范围，及双向 TLS 身份：设置 `client_cert_sha256`（或 `client_cert_pem`）后，该成员单位"
                          "取令牌和每次调用都须出示该客户端证书；设为 null 取消。立即生效。"
                          " Name, scopes, and the mutual-TLS identity (null removes it); takes effect at once.")
async def update_member(session: DbSession, code: str, body: MemberUpdate, pins: CertPins, edge: Edge, principal: Principal = Depends(ops_only)):
    sent = body.model_fields_set
    async with session.begin():
        member = await _member(session, code)
        if "name" in sent and body.name is not None:
            member.name = body.name
        if "scopes" in sent and body.scopes is not None:
            member.scopes = body.scopes
        if sent & {"client_cert_sha256", "client_cert_pem"}:
            member.client_cert_sha256 = body.client_cert_sha256
    pins.set(member.code, member.client_cert_sha256)
    await notify(edge)
    return MemberOut.model_validate(member)


@router.post("/{code}/rotate-secret", response_model=MemberCredentials, summary="轮换密钥 Rotate the secret")
async def rotate_secret(session: DbSession, code: str, principal: Principal = Depends(ops_only),
                        clock: Clock = Depends(get_clock)):
    secret = secrets.token_urlsafe(32)
    hashed = await run_in_threadpool(hash_secret, secret)
    async with session.begin():
        member = await _member(session, code)
        member.secret_hash = hashed
        member.secret_rotated_at = clock.now()
    return MemberCredentials(member=MemberOut.model_validate(member), client_id=member.code, client_secret=secret)


@router.post("/{code}/revoke", response_model=MemberOut, summary="停用成员单位 Revoke a member")
async def revoke(session: DbSession, code: str, revoked: RevokedMembers, edge: Edge, principal: Principal = Depends(ops_only),
                 clock: Clock = Depends(get_clock)):
    async with session.begin():
        member = await _member(session, code)
        member.status = "revoked"
        record_event(session, OutboxEvent, "member.revoked", subject=member.code, now=clock.now(),
                     data={"kind": member.kind})
    revoked.add(code)
    await notify(edge)
    return MemberOut.model_validate(member)
