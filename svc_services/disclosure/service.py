"""Public notices: who publishes (community / street staff over the scope, ops), fund lines that add up to their
totals, the publication window, objections in the objection period answered by staff, withdrawal kept on record."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, NotFound, invalid
from common.lookup import get_or_404
from common.ids import new_id
from common.outbox import record_event
from svc_services.base import OutboxEvent
from svc_services.deliberation.access import elector_of, in_scope
from svc_services.deliberation.models import Topic, Vote
from svc_services.disclosure.models import Objection, PublicNotice
from svc_services.disclosure.schemas import NoticeIn

NOT_FOUND = NotFound("notice.not_found", ("没有这条公示", "No such notice"))
PUBLISHERS = ("community_staff", "street_staff")
DECIDED = ("passed", "rejected", "resolution", "executed", "closed")


def publishes(principal: Principal, scope_code: str) -> bool:
    return principal.role == "ops" or (principal.role in PUBLISHERS and principal.covers_place(scope_code))


def require_publisher(principal: Principal, scope_code: str) -> None:
    if not publishes(principal, scope_code):
        raise Forbidden(("只有负责该范围的社区或街道工作人员可以发布公示", "Only the scope's community or street staff publish"),
                        code="notice.not_publisher")


def _event(session: AsyncSession, type_: str, n: PublicNotice, now: datetime, **data) -> None:
    record_event(session, OutboxEvent, type_, subject=n.id, now=now, community=n.scope_code[:12],
                 grid=n.scope_code[:15] if len(n.scope_code) >= 15 else None, data={"kind": n.kind, **data})


def _check_funds(body: NoticeIn) -> None:
    if body.kind != "fund":
        if body.lines or body.income_total is not None or body.expense_total is not None:
            raise invalid("lines", "notice.lines_only_for_funds", "只有资金公示列收支明细", "Only fund notices carry lines")
        return
    if not body.lines:
        raise invalid("lines", "notice.fund_lines_required", "资金公示须列出收支明细", "A fund notice lists its lines")
    for field, direction in (("income_total", "income"), ("expense_total", "expense")):
        total = getattr(body, field)
        summed = sum((x.amount for x in body.lines if x.direction == direction), Decimal("0.00"))
        if total is None:
            raise invalid(field, "notice.total_required", "资金公示须填写收入和支出合计", "Give the income and expense totals")
        if summed != total:
            raise invalid(field, "notice.total_mismatch", f"明细合计 {summed} 元与所填合计 {total} 元不符",
                          f"The lines add up to {summed} yuan, not {total}")


async def publish(session: AsyncSession, principal: Principal, body: NoticeIn, now: datetime) -> PublicNotice:
    require_publisher(principal, body.scope_code)
    if body.publish_until <= body.publish_from:
        raise invalid("publish_until", "notice.window", "公示截止须晚于公示开始", "publish_until must follow publish_from")
    if body.objection_until is not None and not body.publish_from < body.objection_until <= body.publish_until:
        raise invalid("objection_until", "notice.objection_window", "异议期须在公示期内",
                      "The objection period lies within the publication window")
    _check_funds(body)
    extra: dict = {}
    if body.kind == "deliberation_result":
        topic = await session.get(Topic, body.topic_id) if body.topic_id else None
        if topic is None or not body.scope_code.startswith(topic.scope_code[:12]) or \
                not publishes(principal, topic.scope_code):
            raise invalid("topic_id", "notice.topic_unknown", "没有这个议题", "No such topic")
        if topic.stage not in DECIDED:
            raise invalid("topic_id", "notice.topic_undecided", "议题尚未表决，不能公示结果", "The topic is not decided yet")
        vote = (await session.execute(select(Vote).where(Vote.topic_id == topic.id))).scalar_one_or_none()
        if vote is not None and vote.result:
            r = vote.result
            extra = {"topic_stage": topic.stage, "counts": r["counts"], "cast": r["cast"], "eligible": r["eligible"],
                     "passed": r["passed"], "tally_hash": vote.tally_hash}
    elif body.topic_id:
        raise invalid("topic_id", "notice.topic_only_for_results", "只有议事结果公示关联议题", "Only result notices name a topic")
    n = PublicNotice(id=new_id(), status="published", created_by=principal.caller, created_at=now, version=1,
                     extra=extra, **body.model_dump(exclude={"lines"}),
                     lines=[x.model_dump(mode="json") for x in body.lines])
    session.add(n)
    _event(session, "public_notice.published", n, now)
    return n


async def get_notice(session: AsyncSession, principal: Principal, notice_id: str, now: datetime) -> PublicNotice:
    """Published notices are public by design; one whose window has not begun, only its publishers see."""
    n = await session.get(PublicNotice, notice_id)
    if n is None or (n.publish_from > now and not publishes(principal, n.scope_code)):
        raise NOT_FOUND
    return n


async def withdraw(session: AsyncSession, principal: Principal, n: PublicNotice, reason: str, now: datetime) -> None:
    require_publisher(principal, n.scope_code)
    if n.status == "withdrawn":
        raise Conflict("notice.withdrawn", ("该公示已撤回", "The notice is already withdrawn"))
    n.status, n.withdrawn_reason, n.withdrawn_at, n.version = "withdrawn", reason, now, n.version + 1
    _event(session, "public_notice.withdrawn", n, now)


def public_stmt(now: datetime, scope: str | None, history: bool, principal: Principal | None = None):
    """What a kiosk or the app's public pages list: notices in their window; with history, withdrawn and past
    ones too (they stay on record), never one whose window has not begun (but to its publishers)."""
    shown = PublicNotice.publish_from <= now
    if principal is not None and principal.role == "ops":
        shown = true()
    elif principal is not None and principal.role in PUBLISHERS:
        shown = or_(shown, *[PublicNotice.scope_code.startswith(p) for k in ("street", "community")
                             for p in principal.scope_values(k)])
    stmt = select(PublicNotice).where(shown)
    if not history:
        stmt = stmt.where(PublicNotice.status == "published", PublicNotice.publish_until > now)
    if scope:  # notices for this place: its own and those of the places holding it
        stmt = stmt.where(or_(PublicNotice.scope_code.in_([scope[:n] for n in (12, 15, 18) if n <= len(scope)]),
                              PublicNotice.scope_code.startswith(scope)))
    return stmt


async def public_notice(session: AsyncSession, notice_id: str, now: datetime) -> PublicNotice:
    n = await session.get(PublicNotice, notice_id)
    if n is None or n.publish_from > now:
        raise NOT_FOUND
    return n


async def file_objection(session: AsyncSession, principal: Principal, n: PublicNotice, text: str,
                         now: datetime) -> Objection:
    if principal.role not in ("resident", "proxy"):
        raise Forbidden(("异议由居民本人（或其代办人）提出", "Residents (or their proxies) object"), code="objection.residents_only")
    elector = await elector_of(session, principal)
    if not in_scope(elector, n.scope_code):
        raise Forbidden(("只有公示范围内的居民可以提出异议", "Only residents of the notice's scope object"),
                        code="objection.outside_scope")
    if n.status != "published" or n.objection_until is None or not n.publish_from <= now <= n.objection_until:
        raise Conflict("objection.closed", ("不在异议期内", "Outside the objection period"))
    o = Objection(id=new_id(), notice_id=n.id, person_id=elector.person_id, text=text, at=now)
    session.add(o)
    _event(session, "public_notice.objection_filed", n, now, objection_id=o.id)
    return o


async def objections(session: AsyncSession, principal: Principal, n: PublicNotice) -> list[Objection]:
    stmt = select(Objection).where(Objection.notice_id == n.id).order_by(Objection.at, Objection.id)
    if not publishes(principal, n.scope_code):
        if principal.role not in ("resident", "proxy") or not principal.person_id:
            raise Forbidden(("只有发布单位和异议人可以查看异议", "Only the publisher and the objector read objections"),
                            code="notice.not_publisher")
        stmt = stmt.where(Objection.person_id == principal.person_id)
    return list((await session.execute(stmt)).scalars())


async def answer(session: AsyncSession, principal: Principal, n: PublicNotice, objection_id: str, text: str,
                 now: datetime) -> Objection:
    require_publisher(principal, n.scope_code)
    o = await get_or_404(session, Objection, objection_id, NotFound("objection.not_found", ("没有这条异议", "No such objection")),
                         visible=lambda o: o.notice_id == n.id, for_update=True)
    if o.answered_at is not None:
        raise Conflict("objection.answered", ("该异议已答复", "The objection was already answered"))
    o.answer, o.answered_by, o.answered_at = text, principal.caller, now
    _event(session, "public_notice.objection_answered", n, now, objection_id=o.id,
           hours=round((now - o.at).total_seconds() / 3600, 2))
    return o
