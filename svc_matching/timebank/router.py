from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.encoders import jsonable_encoder
from sqlalchemy import select

from common.auth import Principal, get_principal, require_roles
from common.clock import Clock, get_clock
from common.errors import Problem
from common.pagination import Page, PageParams, encode_cursor
from svc_matching.timebank import service
from svc_matching.timebank.models import Account, Entry, Posting
from svc_matching.timebank.schemas import (
    AccountOut, CreditCreate, EntryOut, PostingCreate, PostingOut, RedemptionCreate, StatementLine,
)

router = APIRouter(prefix="/matching/v1/timebank", tags=["timebank 时间银行"])
LEDGER_STAFF = ("community_staff", "street_staff", "ops", "system")


def _can_see(principal: Principal, acc: Account) -> bool:
    if principal.role in ("community_staff", "street_staff", "ops", "system", "evaluator"):
        return True
    return acc.owner_kind == "person" and principal.person_id == acc.owner_id


async def _posting_response(session, posting: Posting, created: bool) -> JSONResponse:
    entries = await service.posting_entries(session, posting.id)
    out = PostingOut(id=posting.id, posting_id=posting.client_posting_id, kind=posting.kind, unit=posting.unit,
                     memo=posting.memo, reference=posting.reference, created_at=posting.created_at,
                     entries=[EntryOut.model_validate(e) for e in entries])
    return JSONResponse(jsonable_encoder(out), status_code=201 if created else 200,
                        headers={"Idempotency-Replayed": "false" if created else "true"})


@router.post("/postings", status_code=201, response_model=PostingOut, summary="复式记账 Post balanced entries")
async def create_posting(body: PostingCreate, request: Request,
                         principal: Principal = Depends(require_roles("street_staff", "ops", "system")),
                         clock: Clock = Depends(get_clock)):
    async with request.app.state.db.session() as session, session.begin():
        posting, created = await service.post(
            session, client_posting_id=body.posting_id, kind="transfer", unit=body.unit,
            entries=[(e.account_id, e.amount) for e in body.entries], memo=body.memo, reference=body.reference,
            created_by=principal.caller, now=clock.now())
        return await _posting_response(session, posting, created)


@router.post("/credits", status_code=201, response_model=PostingOut, summary="发放时长或积分 Credit hours / points")
async def credit(body: CreditCreate, request: Request, principal: Principal = Depends(require_roles(*LEDGER_STAFF)),
                 clock: Clock = Depends(get_clock)):
    if principal.role in ("community_staff", "street_staff") and not principal.covers_place(body.community):
        raise Problem(403, "forbidden", ("只能为本辖区居民记账", "Only for residents in your scope"))
    async with request.app.state.db.session() as session, session.begin():
        posting, created = await service.credit_member(
            session, person_id=body.person_id, community=body.community, unit=body.unit, amount=body.amount,
            client_posting_id=body.posting_id, memo=body.memo, reference=body.reference,
            created_by=principal.caller, now=clock.now(), activity=body.activity)
        return await _posting_response(session, posting, created)


@router.post("/redemptions", status_code=201, response_model=PostingOut, summary="兑换服务 Redeem for a service")
async def redeem(body: RedemptionCreate, request: Request, principal: Principal = Depends(get_principal),
                 clock: Clock = Depends(get_clock)):
    async with request.app.state.db.session() as session, session.begin():
        acc = await session.get(Account, body.account_id)
        if acc is None or acc.kind != "member":
            from common.errors import invalid
            raise invalid("account_id", "ledger.account_unknown", "账户不存在", "Unknown account")
        if not (principal.role in LEDGER_STAFF or (acc.owner_kind == "person" and principal.person_id == acc.owner_id)):
            raise Problem(403, "forbidden", ("只能使用本人的账户", "You may only redeem from your own account"))
        if principal.role in ("community_staff", "street_staff") and not principal.covers_place(body.community):
            raise Problem(403, "forbidden", ("只能为本辖区居民记账", "Only for residents in your scope"))
        posting, created = await service.redeem(
            session, account=acc, community=body.community, amount=body.amount, client_posting_id=body.posting_id,
            memo=body.memo, reference=body.reference, created_by=principal.caller, now=clock.now())
        return await _posting_response(session, posting, created)


@router.get("/accounts", response_model=list[AccountOut], summary="查询账户 Accounts of a person")
async def accounts(request: Request, person_id: str, principal: Principal = Depends(get_principal)):
    async with request.app.state.db.session() as session:
        rows = list((await session.execute(select(Account).where(Account.owner_kind == "person",
                                                                 Account.owner_id == person_id)
                                           .order_by(Account.unit))).scalars())
    if rows and not _can_see(principal, rows[0]):
        raise Problem(403, "forbidden", ("只能查看本人的账户", "You may only see your own accounts"))
    return [AccountOut.model_validate(a) for a in rows]


async def _account(session, principal: Principal, account_id: str) -> Account:
    acc = await session.get(Account, account_id)
    if acc is None:
        raise Problem(404, "ledger.account_not_found", ("账户不存在", "Account not found"))
    if not _can_see(principal, acc):
        raise Problem(403, "forbidden", ("只能查看本人的账户", "You may only see your own accounts"))
    return acc


@router.get("/accounts/{account_id}", response_model=AccountOut, summary="账户余额 Account and balance")
async def account(account_id: str, request: Request, principal: Principal = Depends(get_principal)):
    async with request.app.state.db.session() as session:
        return AccountOut.model_validate(await _account(session, principal, account_id))


@router.get("/accounts/{account_id}/statement", response_model=Page[StatementLine], summary="对账单 Statement")
async def statement(account_id: str, request: Request, page: PageParams = Depends(),
                    principal: Principal = Depends(get_principal)):
    async with request.app.state.db.session() as session:
        await _account(session, principal, account_id)
        stmt = (select(Entry, Posting).join(Posting, Posting.id == Entry.posting_id)
                .where(Entry.account_id == account_id).order_by(Entry.id).limit(page.limit + 1))
        if page.after:
            stmt = stmt.where(Entry.id > page.after_key(int))
        rows = (await session.execute(stmt)).all()
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    items = [StatementLine(entry_id=e.id, posting_id=p.id, client_posting_id=p.client_posting_id, kind=p.kind,
                           memo=p.memo, amount=e.amount, balance_after=e.balance_after, created_at=e.created_at)
             for e, p in rows]
    return Page[StatementLine](items=items, next_cursor=encode_cursor(rows[-1][0].id) if more else None)
