"""The ledger's rules: balanced postings, no member account below zero, idempotent by client posting id,
safe under concurrent postings (row locks on PostgreSQL, the single writer on SQLite)."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import Problem, invalid
from common.ids import new_id
from common.outbox import record_event
from svc_matching.base import OutboxEvent
from svc_matching.timebank.models import Account, Entry, Posting

UNIT_TEXT = {"minute": ("分钟（时间银行）", "minutes (time bank)"), "point": ("积分", "points")}


async def open_account(session: AsyncSession, owner_kind: str, owner_id: str, unit: str, kind: str,
                       now: datetime) -> Account:
    """The account, created on first use. Only issuance accounts may go below zero."""
    stmt = select(Account).where(Account.owner_kind == owner_kind, Account.owner_id == owner_id,
                                 Account.unit == unit, Account.kind == kind)
    acc = (await session.execute(stmt)).scalar_one_or_none()
    if acc is not None:
        return acc
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # Insert-or-ignore, so two requests opening the same account at once both succeed.
    await session.execute(insert(Account).values(
        id=new_id(), owner_kind=owner_kind, owner_id=owner_id, unit=unit, kind=kind,
        allow_negative=(kind == "issuance"), balance=0, version=1, created_at=now,
    ).on_conflict_do_nothing(index_elements=["owner_kind", "owner_id", "unit", "kind"]))
    acc = (await session.execute(stmt)).scalar_one()
    return acc


def _fingerprint(kind: str, unit: str, entries: list[tuple[str, int]], memo: str | None, reference: str | None) -> str:
    raw = json.dumps([kind, unit, sorted(entries), memo, reference], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


async def _lock(session: AsyncSession, ids: list[str]) -> dict[str, Account]:
    ids = sorted(set(ids))  # one global order: no deadlocks between postings touching the same accounts
    if session.bind.dialect.name == "sqlite":
        # The first statement of the transaction is a write, so SQLite takes its single write lock (waiting
        # on busy_timeout) before anything is read: concurrent postings run one after another.
        await session.execute(update(Account).where(Account.id.in_(ids)).values(version=Account.version + 1)
                              .execution_options(synchronize_session=False))
        rows = (await session.execute(select(Account).where(Account.id.in_(ids))
                                      .execution_options(populate_existing=True))).scalars()
    else:
        rows = (await session.execute(select(Account).where(Account.id.in_(ids)).order_by(Account.id)
                                      .with_for_update().execution_options(populate_existing=True))).scalars()
        rows = list(rows)
        for a in rows:
            a.version += 1
    return {a.id: a for a in rows}


async def post(session: AsyncSession, *, client_posting_id: str, kind: str, unit: str,
               entries: list[tuple[str, int]], memo: str | None, reference: str | None, created_by: str,
               now: datetime, amount_field: str = "entries", community: str | None = None) -> tuple[Posting, bool]:
    """Write one balanced posting; returns (posting, created). A retry with the same id returns the original."""
    if not entries or sum(a for _, a in entries) != 0:
        raise invalid("entries", "ledger.unbalanced", "分录借贷不平衡（金额合计须为 0）",
                      "The entries do not balance (they must sum to zero)")
    for i, (_, a) in enumerate(entries):
        if a == 0:
            raise invalid(f"entries.{i}.amount", "ledger.zero_amount", "金额不能为 0", "An amount cannot be zero")
    if len({acc for acc, _ in entries}) != len(entries):
        raise invalid("entries", "ledger.duplicate_account", "同一账户在一笔记账中只能出现一次",
                      "An account may appear once per posting")
    fp = _fingerprint(kind, unit, entries, memo, reference)
    accounts = await _lock(session, [acc for acc, _ in entries])
    existing = (await session.execute(select(Posting).where(Posting.client_posting_id == client_posting_id))
                ).scalar_one_or_none()
    if existing is not None:
        if existing.fingerprint != fp:
            raise Problem(409, "ledger.posting_id_reused", ("该记账编号已用于内容不同的记账",
                                                            "This posting id was used for a different posting"))
        return existing, False
    for i, (acc_id, amount) in enumerate(entries):
        acc = accounts.get(acc_id)
        if acc is None:
            raise invalid(f"{amount_field}" if amount_field != "entries" else f"entries.{i}.account_id",
                          "ledger.account_unknown", "账户不存在", "Unknown account")
        if acc.unit != unit:
            raise invalid(f"entries.{i}.account_id", "ledger.unit_mismatch", "账户计量单位与记账不一致",
                          "The account's unit differs from the posting's")
        if not acc.allow_negative and acc.balance + amount < 0:
            zh_unit = UNIT_TEXT[unit][0]
            raise invalid(amount_field if amount_field != "entries" else f"entries.{i}.amount",
                          "ledger.insufficient_balance", f"余额不足：当前余额 {acc.balance} {zh_unit}",
                          f"Insufficient balance: {acc.balance} {UNIT_TEXT[unit][1]} available")
    posting = Posting(id=new_id(), client_posting_id=client_posting_id, fingerprint=fp, kind=kind, unit=unit,
                      memo=memo, reference=reference, created_by=created_by, created_at=now)
    session.add(posting)
    await session.flush()
    for acc_id, amount in entries:
        acc = accounts[acc_id]
        acc.balance += amount
        session.add(Entry(posting_id=posting.id, account_id=acc_id, amount=amount, balance_after=acc.balance,
                          created_at=now))
    record_event(session, OutboxEvent, "ledger.posted", subject=posting.id,
                 data={"kind": kind, "unit": unit, "client_posting_id": client_posting_id, "reference": reference,
                       "entries": [{"account_id": a, "amount": x} for a, x in entries]},
                 community=_community_code(community), now=now)
    await session.flush()
    return posting, True


def _community_code(community: str | None) -> str | None:
    """An event's community is a 12-digit code or nothing (postings without a place use the "platform" account
    owner, which svc_metrics' envelope would refuse)."""
    return community if community and len(community) == 12 and community.isdigit() else None


async def posting_entries(session: AsyncSession, posting_id: str) -> list[Entry]:
    return list((await session.execute(select(Entry).where(Entry.posting_id == posting_id).order_by(Entry.id))
                 ).scalars())


async def credit_member(session: AsyncSession, *, person_id: str, community: str, unit: str, amount: int,
                        client_posting_id: str, memo: str | None, reference: str | None, created_by: str,
                        now: datetime, kind: str = "credit", activity: str | None = None,
                        grid: str | None = None) -> tuple[Posting, bool]:
    """Hours or points earned: from the community's issuance account to the person's account.

    Hours and points are earned by taking part (议事, 志愿服务, 社区活动: DOMAIN.md, time bank and points), so a new
    credit is also the person's participation: `participation.recorded` goes out in the same transaction (a
    replayed posting id records nothing new)."""
    member = await open_account(session, "person", person_id, unit, "member", now)
    source = await open_account(session, "community", community, unit, "issuance", now)
    posting, created = await post(session, client_posting_id=client_posting_id, kind=kind, unit=unit,
                                  entries=[(source.id, -amount), (member.id, amount)], memo=memo, reference=reference,
                                  created_by=created_by, now=now, community=community, amount_field="amount")
    if created and kind == "credit":
        activity = activity or ("volunteer_service" if unit == "minute" else "community_activity")
        record_event(session, OutboxEvent, "participation.recorded", subject=posting.id,
                     data={"person_id": person_id, "activity": activity, "posting_id": posting.id, "unit": unit,
                           "amount": amount},
                     community=grid[:12] if grid else _community_code(community), grid=grid, now=now)
        await session.flush()
    return posting, created


async def redeem(session: AsyncSession, *, account: Account, community: str, amount: int, client_posting_id: str,
                 memo: str | None, reference: str | None, created_by: str, now: datetime) -> tuple[Posting, bool]:
    """Hours or points spent on a service: from the member's account to the community's redemption account."""
    sink = await open_account(session, "community", community, account.unit, "redemption", now)
    return await post(session, client_posting_id=client_posting_id, kind="redemption", unit=account.unit,
                      entries=[(account.id, -amount), (sink.id, amount)], memo=memo, reference=reference,
                      created_by=created_by, now=now, community=community, amount_field="amount")
