"""Rectification cases (整改): opened by the scan when a community's satisfaction is below the floor; community
or street staff of that place advance them opened → in_progress → closed (closing needs a note)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem, invalid
from common.lookup import get_or_404
from svc_metrics.alerts.models import RectificationCase, Warning_

STATUS_ZH = {"opened": "已立案", "in_progress": "整改中", "closed": "已销号"}
NEXT = {"opened": "in_progress", "in_progress": "closed"}
ACT_ROLES = ("community_staff", "street_staff")


def open_for(warnings: list[Warning_], now: datetime) -> list[RectificationCase]:
    return [RectificationCase(
        id=f"rc-{w.id}", warning_id=w.id, scope=w.scope, period=w.period, reason_zh=w.title_zh[:300],
        reason_en=w.title_en[:300], evidence=w.evidence, status="opened", opened_at=now, opened_by="system",
        history=[{"status": "opened", "at": now.isoformat(), "by": "system", "note": w.title_zh}])
        for w in warnings if w.rectification]


def visible(principal: Principal, item: RectificationCase | Warning_) -> bool:
    """Who sees a warning or a rectification case: its place and the places above it; evaluators without a
    place scope see all."""
    if principal.role in ("ops", "system"):
        return True
    places = [v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)]
    if principal.role == "evaluator" and not places:
        return True
    return principal.covers_place(item.scope) or any(p.startswith(item.scope) for p in places)


async def get_visible(session: AsyncSession, principal: Principal, case_id: str) -> RectificationCase:
    return await get_or_404(session, RectificationCase, case_id,
                            Problem(404, "rectification.not_found", ("整改事项不存在或无权查看", "Rectification case not found")),
                            visible=lambda c: visible(principal, c))


async def list_visible(session: AsyncSession, principal: Principal, status: str | None,
                       scope: str | None) -> list[RectificationCase]:
    stmt = select(RectificationCase).order_by(RectificationCase.opened_at.desc(), RectificationCase.id)
    if status:
        stmt = stmt.where(RectificationCase.status == status)
    if scope and scope != "all":
        stmt = stmt.where(RectificationCase.scope.startswith(scope[:12]))
    return [c for c in (await session.execute(stmt.limit(1000))).scalars() if visible(principal, c)][:200]


async def advance(session: AsyncSession, principal: Principal, case_id: str, to: str, note: str | None,
                  now: datetime) -> RectificationCase:
    case = await get_visible(session, principal, case_id)
    if principal.role not in ACT_ROLES or not principal.covers_place(case.scope):
        raise Problem(403, "rectification.forbidden", ("只有该社区或所属街道的工作人员可以推进整改",
                                                       "Only community or street staff of this place may act on it"))
    if NEXT.get(case.status) != to:
        raise Problem(409, "rectification.bad_transition",
                      (f"整改事项当前为「{STATUS_ZH[case.status]}」，不能改为「{STATUS_ZH.get(to, to)}」",
                       f"The case is {case.status}; it cannot move to {to}"),
                      extra={"status": case.status, "allowed": [NEXT[case.status]] if case.status in NEXT else []})
    note = (note or "").strip() or None
    if to == "closed" and not note:
        raise invalid("note", "rectification.note_required", "销号须写明整改情况", "Closing needs a note on what was done")
    by = principal.caller
    if to == "in_progress":
        case.started_at, case.started_by = now, by
    else:
        case.closed_at, case.closed_by, case.close_note = now, by, note
    case.status = to
    case.history = [*(case.history or []), {"status": to, "at": now.isoformat(), "by": by, "note": note}]
    await session.flush()
    return case


def out(case: RectificationCase) -> dict[str, Any]:
    return {"id": case.id, "warning_id": case.warning_id, "scope": case.scope, "period": case.period,
            "reason_zh": case.reason_zh, "reason_en": case.reason_en, "evidence": case.evidence,
            "status": case.status, "status_zh": STATUS_ZH[case.status],
            "opened_at": case.opened_at.isoformat(), "opened_by": case.opened_by,
            "started_at": case.started_at.isoformat() if case.started_at else None, "started_by": case.started_by,
            "closed_at": case.closed_at.isoformat() if case.closed_at else None, "closed_by": case.closed_by,
            "close_note": case.close_note, "history": case.history or []}
