"""Demo members and users for the gateway (idempotent)."""
from __future__ import annotations

from sqlalchemy import select

from common.clock import Clock
from common.db import Database
from common.outbox import record_event
from gateway.base import OutboxEvent
from common.demo import DEMO_MEMBERS, DEMO_PASSWORD, DEMO_USERS
from gateway.accounts.seed import seed_admins
from gateway.identity.tokens import hash_secret
from gateway.members.models import Member, User
from gateway.exchange.models import Grant
from gateway.exchange.service import ensure_catalogue, record_item_state
from gateway.exchange.workdays import add_working_days
from common.ids import new_id
from datetime import timedelta

SERVICE_MEMBER_NAMES = {
    "svc_services": "诉求工单服务", "svc_residents": "居民档案服务", "svc_matching": "供需匹配服务",
    "svc_metrics": "考核评估服务", "departments": "部门系统模拟",
}


# The residents' app, the member people sign in through: staff accounts, phone sign-in and kiosk sessions are its
# users (gateway/accounts), so every deployment has it, demo or not; it has no secret (the password grant names it)
RESIDENT_APP = {"code": "portal", "name": "居民端（手机应用）", "kind": "app", "role": "system", "scopes": []}


async def ensure_service_members(db: Database, service_credentials: dict[str, str], *,
                                 clock: Clock | None = None) -> None:
    """The internal services are members of the exchange with their own client credentials, and the residents' app
    is one without (always needed: `onenet bootstrap`, demo or not)."""
    now = (clock or Clock()).now()
    async with db.session() as session, session.begin():
        if await session.get(Member, RESIDENT_APP["code"]) is None:
            app = RESIDENT_APP
            session.add(Member(code=app["code"], name=app["name"], kind=app["kind"], role=app["role"],
                               scopes=app["scopes"], secret_hash=None, status="active", created_at=now))
            record_event(session, OutboxEvent, "member.joined", subject=app["code"], now=now,
                         data={"kind": app["kind"], "name": app["name"]})
        for code, secret in service_credentials.items():
            member = await session.get(Member, code)
            if member is None:
                session.add(Member(code=code, name=SERVICE_MEMBER_NAMES.get(code, code),
                                   kind="emulator" if code == "departments" else "service", role="system",
                                   scopes=[], secret_hash=hash_secret(secret), secret_rotated_at=now,
                                   status="active", created_at=now))
                # svc_metrics counts connected departments (对接部门数) from member.joined (kind "department")
                record_event(session, OutboxEvent, "member.joined", subject=code, now=now,
                             data={"kind": "emulator" if code == "departments" else "service"})


async def seed_demo(db: Database, *, clock: Clock | None = None) -> None:
    clock = clock or Clock()
    now = clock.now()
    async with db.session() as session, session.begin():
        for m in (RESIDENT_APP, *DEMO_MEMBERS):  # the residents' app too, for a demo seeded alone
            if await session.get(Member, m["code"]) is None:
                # Department and app members get their secrets from `onenet`'s member API (rotate-secret);
                # the demo apps need none because users log in through them with the password grant.
                session.add(Member(code=m["code"], name=m["name"], kind=m["kind"], role=m["role"],
                                   scopes=m["scopes"], secret_hash=None, status="active", created_at=now))
                record_event(session, OutboxEvent, "member.joined", subject=m["code"], now=now,
                             data={"kind": m["kind"], "name": m["name"]})
        await session.flush()
        password_hash = hash_secret(DEMO_PASSWORD)
        for u in DEMO_USERS:
            if await session.get(User, u["username"]) is None:
                session.add(User(username=u["username"], display_name=u["display_name"],
                                 password_hash=password_hash, role=u["role"], scopes=u["scopes"],
                                 acting_for=u.get("acting_for"), member_code="portal", status="active",
                                 created_at=now))
    await seed_admins(db, clock=clock)
    await seed_demo_grants(db, clock=clock)


# Once-only (一次采集): the services that ask departments for residents' data hold approved, dated grants for it,
# as the departments would have approved them on the exchange. A real deployment applies through the API.
DEMO_GRANTS = [
    ("svc_residents", "gongan.hukou", "居民身份与户籍核验（一次采集，免交纸质证明）"),
    ("svc_residents", "minzheng.assistance", "低保特困身份核验（一次采集）"),
    ("svc_residents", "canlian.certificate", "残疾人证核验（一次采集）"),
    ("svc_residents", "weijian.health-check", "健康体检摘要核验（一次采集）"),
    ("svc_residents", "renshe.insurance", "社会保险参保核验（一次采集）"),
    ("svc_services", "gongan.hukou", "办件材料共享调取（免于居民重复提交）"),
    ("svc_services", "minzheng.assistance", "办件材料共享调取（免于居民重复提交）"),
    ("svc_services", "canlian.certificate", "办件材料共享调取（免于居民重复提交）"),
    ("svc_services", "weijian.health-check", "办件材料共享调取（免于居民重复提交）"),
    ("svc_services", "renshe.insurance", "办件材料共享调取（免于居民重复提交）"),
]


async def seed_demo_grants(db: Database, *, clock: Clock | None = None) -> None:
    now = (clock or Clock()).now()
    await ensure_catalogue(db, now)
    async with db.session() as session, session.begin():
        for consumer, resource, purpose in DEMO_GRANTS:
            owner = "dept-" + resource.split(".")[0]
            live = (await session.execute(select(Grant.id).where(
                Grant.consumer == consumer, Grant.resource == resource, Grant.status == "approved"))).first()
            if live:
                continue
            session.add(Grant(id=new_id(), resource=resource, owner=owner, consumer=consumer,
                              applicant_user=consumer, purpose=purpose, status="approved", fields=None,
                              expires_at=now + timedelta(days=365), applied_at=now, checked_at=now,
                              decided_at=now, decided_by=f"{owner}/demo-seed",
                              check_due_at=add_working_days(now, 2), reply_due_at=add_working_days(now, 5),
                              version=1))
            await session.flush()
            await record_item_state(session, resource, now)
