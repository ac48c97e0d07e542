from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.encoders import jsonable_encoder
from sqlalchemy import select

from common.deps import DbSession
from common.acting import acts
from common.auth import Principal, get_principal, require_roles
from common.clock import Clock, get_clock
from common.errors import Problem, field_error, invalid
from common.lookup import get_or_404
from common.pagination import Page, PageParams
from svc_matching.access import PLACE_STAFF, is_own, sees_place
from svc_matching.people.places import known_person, reaches_person
from svc_matching.timebank import service
from svc_matching.timebank.models import Account, Entry, Posting
from svc_matching.timebank.schemas import (
    AccountOut, CreditCreate, EntryOut, PostingCreate, PostingOut, RedemptionCreate, StatementLine,
)

router = APIRouter(prefix="/matching/v1/timebank", tags=["timebank 时间银行"])
# who credits hours and points, and records redemptions for residents (svc_matching/access.py)
LEDGER_STAFF = ("community_staff", "street_staff", "ops")
ACCOUNT_READERS = ("resident", "proxy", *PLACE_STAFF, "ops")
REDEEMERS = ("resident", "proxy", "community_staff", "street_staff", "ops")
NOT_FOUND = ("账户不存在", "Account not found")


async def may_see_account(session, principal: Principal, acc: Account) -> bool:
    """A person's account: the person, their proxy, staff of where they live, ops. A community's issuance and
    redemption accounts: staff whose scopes cover the community, ops."""
    if principal.role == "ops":
        return True
    if acc.owner_kind == "person":
        return reaches_person(principal, acc.owner_id, await known_person(session, acc.owner_id))
    return sees_place(principal, acc.owner_id)


def _check_issuer(principal: Principal, community: str) -> None:
    if principal.role in ("community_staff", "street_staff") and not principal.covers_place(community):
        raise Problem(403, "forbidden", ("只能为本辖区居民记账", "Only for residents in your scope"))


async def _posting_response(session, posting: Posting, created: bool) -> JSONResponse:
    entries = await service.posting_entries(session, posting.id)
    out = PostingOut(id=posting.id, posting_id=posting.client_posting_id, kind=posting.kind, unit=posting.unit,
                     memo=posting.memo, reference=posting.reference, created_at=posting.created_at,
                     entries=[EntryOut.model_validate(e) for e in entries])
    return JSONResponse(jsonable_encoder(out), status_code=201 if created else 200,
                        headers={"Idempotency-Replayed": "false" if created else "true"})


@router.post("/postings", status_code=201, response_model=PostingOut, summary="复式记账 Post balanced entries")
async def create_posting(session: DbSession, body: PostingCreate, request: Request,
                         principal: Principal = Depends(require_roles("street_staff", "ops")),
                         clock: Clock = Depends(get_clock)):
    async with session.begin():
        for i, e in enumerate(body.entries):  # an account outside the caller's places reads as unknown
            acc = await session.get(Account, e.account_id)
            if acc is not None and not await may_see_account(session, principal, acc):
                raise invalid(f"entries.{i}.account_id", "ledger.account_unknown", "账户不存在", "Unknown account")
        posting, created = await service.post(
            session, client_posting_id=body.posting_id, kind="transfer", unit=body.unit,
            entries=[(e.account_id, e.amount) for e in body.entries], memo=body.memo, reference=body.reference,
            created_by=principal.caller, now=clock.now())
        return await _posting_response(session, posting, created)


@router.post("/credits", status_code=201, response_model=PostingOut, summary="发放时长或积分 Credit hours / points")
async def credit(session: DbSession, body: CreditCreate, request: Request, principal: Principal = Depends(require_roles(*LEDGER_STAFF)),
                 clock: Clock = Depends(get_clock)):
    _check_issuer(principal, body.community)
    async with session.begin():
        # only a person of the register (svc_residents' feed) within the caller's places gets an account: an
        # unknown person and one elsewhere get the same answer
        if not reaches_person(principal, body.person_id, await known_person(session, body.person_id)):
            raise invalid("person_id", "ledger.person_unknown", "找不到该居民（不存在或不在您的辖区内）",
                          "No such person within your scope")
        posting, created = await service.credit_member(
            session, person_id=body.person_id, community=body.community, unit=body.unit, amount=body.amount,
            client_posting_id=body.posting_id, memo=body.memo, reference=body.reference,
            created_by=principal.caller, now=clock.now(), activity=body.activity)
        return await _posting_response(session, posting, created)


@router.post("/redemptions", status_code=201, response_model=PostingOut, dependencies=[acts("timebank.redeem")],
             summary="兑换服务 Redeem for a service")
async def redeem(session: DbSession, body: RedemptionCreate, request: Request,
                 principal: Principal = Depends(require_roles(*REDEEMERS)), clock: Clock = Depends(get_clock)):
    async with session.begin():
        # another person's account, or one outside the caller's places, reads as unknown
        acc = await get_or_404(session, Account, body.account_id,
                               Problem(404, "ledger.account_not_found", NOT_FOUND,
                                       errors=[field_error("account_id", "ledger.account_not_found", *NOT_FOUND)]),
                               visible=lambda a: a.kind == "member" and may_see_account(session, principal, a))
        _check_issuer(principal, body.community)
        posting, created = await service.redeem(
            session, account=acc, community=body.community, amount=body.amount, client_posting_id=body.posting_id,
            memo=body.memo, reference=body.reference, created_by=principal.caller, now=clock.now())
        return await _posting_response(session, posting, created)


@router.get("/accounts", response_model=list[AccountOut], summary="查询账户 Accounts of a person")
async def accounts(session: DbSession, request: Request, person_id: str = Query(min_length=1, max_length=36),
                   principal: Principal = Depends(require_roles(*ACCOUNT_READERS))):
    """A resident (or proxy) asks about their own person only (403 otherwise, whoever the person is); staff get
    the accounts of a person they cover, else `[]`: the same answer for a person without accounts, one elsewhere
    and one who does not exist."""
    if principal.role in ("resident", "proxy") and not is_own(principal, person_id):
        raise Problem(403, "forbidden", ("只能查看本人的账户", "You may only see your own accounts"))
    if principal.role != "ops" and not reaches_person(principal, person_id,
                                                      await known_person(session, person_id)):
        return []
    rows = list((await session.execute(select(Account).where(Account.owner_kind == "person",
                                                             Account.owner_id == person_id)
                                       .order_by(Account.unit))).scalars())
    return [AccountOut.model_validate(a) for a in rows]


async def _account(session, principal: Principal, account_id: str) -> Account:
    return await get_or_404(session, Account, account_id, Problem(404, "ledger.account_not_found", NOT_FOUND),
                            visible=lambda a: may_see_account(session, principal, a))


@router.get("/accounts/{account_id}", response_model=AccountOut, summary="账户余额 Account and balance")
async def account(session: DbSession, account_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return AccountOut.model_validate(await _account(session, principal, account_id))


@router.get("/accounts/{account_id}/statement", response_model=Page[StatementLine], summary="对账单 Statement")
async def statement(session: DbSession, account_id: str, request: Request, page: PageParams = Depends(),
                    principal: Principal = Depends(get_principal)):
    await _account(session, principal, account_id)
    stmt = (select(Entry, Posting).join(Posting, Posting.id == Entry.posting_id)
            .where(Entry.account_id == account_id))
    rows = (await session.execute(page.keyset(stmt, Entry.id, kind=int))).all()
    return page.page(rows, key=lambda row: row[0].id, item=lambda row: StatementLine(
        entry_id=row[0].id, posting_id=row[1].id, client_posting_id=row[1].client_posting_id, kind=row[1].kind,
        memo=row[1].memo, amount=row[0].amount, balance_after=row[0].balance_after, created_at=row[0].created_at))
