"""Materials the resident brings (证明材料): a file moves a material from awaiting_upload (or a failed fetch, or a
rejected file) to `uploaded`; staff of the request's place then mark it `verified` or `rejected` with a reason
(a rejected one awaits a new file). Each step is an event for the once-only indicators: `material.obtained` with
`source` exchange (fetched from the department) or upload (the resident brought it), `material.verified` /
`material.rejected`, and `request.materials_complete` once every required material is present (fetched or
verified), when the request can proceed without asking the resident again."""
from __future__ import annotations

from datetime import datetime
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.crypto import FieldProtection
from common.db import Database
from common.errors import Conflict, Forbidden, NotFound, invalid
from common.ids import new_id
from common.outbox import record_event
from common.storage import ObjectStore
from svc_services.attachments import service as files
from svc_services.base import OutboxEvent
from svc_services.materials.models import RequestMaterial
from svc_services.materials.service import ensure_records
from svc_services.requests.access import may_act
from svc_services.requests.lifecycle import GRID, MANAGERS
from svc_services.requests.models import ServiceRequest
from svc_services.requests.service import get_request

AWAITING = ("awaiting_upload", "pending", "rejected")
PRESENT = ("fetched", "verified", "not_applicable")
REVIEWERS = MANAGERS + GRID
UNKNOWN = NotFound("material.not_found", ("该诉求没有这项材料", "This request has no such material"))


def _not_awaiting(m: RequestMaterial) -> Conflict:
    return Conflict("material.not_awaiting_upload", (f"该材料当前状态为 {m.status}，不需要上传",
                                                     f"The material is {m.status}; it takes no file now"),
                    extra={"status": m.status})


async def _material(session: AsyncSession, request_id: str, code: str, *, lock: bool = False) -> RequestMaterial:
    stmt = select(RequestMaterial).where(RequestMaterial.request_id == request_id, RequestMaterial.code == code)
    m = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if m is None:
        raise UNKNOWN
    return m


def material_event(session: AsyncSession, type_: str, req: ServiceRequest, m: RequestMaterial, now: datetime,
                   **data) -> None:
    record_event(session, OutboxEvent, type_, subject=m.id, now=now, community=req.community, grid=req.grid,
                 data={"request_id": req.id, "item_code": req.item_code, "code": m.code, "source": m.source,
                       "department": m.department, **data})


async def complete_if_present(session: AsyncSession, req: ServiceRequest, now: datetime) -> bool:
    """After a material became present: when every required one is, the request's `request.materials_complete`."""
    rows = (await session.execute(select(RequestMaterial).where(RequestMaterial.request_id == req.id))).scalars().all()
    if rows and all(m.status in PRESENT for m in rows if m.required):
        record_event(session, OutboxEvent, "request.materials_complete", subject=req.id, now=now,
                     community=req.community, grid=req.grid,
                     data={"item_code": req.item_code, "category": req.category,
                           "exchange": sum(m.status == "fetched" for m in rows),
                           "upload": sum(m.status == "verified" for m in rows)})
        return True
    return False


async def upload(db: Database, store: ObjectStore, protection: FieldProtection, principal: Principal,
                 request_id: str, code: str, *, upload: BinaryIO, now: datetime) -> RequestMaterial:
    async with db.session() as session:
        req = await get_request(session, principal, request_id)
        files.may_upload(principal, req, files.MATERIAL_UPLOADERS)
        files.check_open(req)
    records = await ensure_records(db, req, now)
    m = next((r for r in records if r.code == code), None)
    if m is None:
        raise UNKNOWN
    if m.status not in AWAITING:
        raise _not_awaiting(m)
    kept = await files.examine_file("material", upload)
    aid = new_id()
    cols = await files.put_objects(store, aid, kept, encrypt=True, protection=protection)
    try:
        async with db.session() as session, session.begin():
            req = await session.get(ServiceRequest, request_id, with_for_update=True)
            files.check_open(req)
            m = await _material(session, req.id, code, lock=True)
            if m.status not in AWAITING:
                raise _not_awaiting(m)
            session.add(files.new_row(aid, req, principal, "material", kept, cols, store, now=now, material_id=m.id))
            await session.flush()
            m.status, m.attachment_id, m.updated_at = "uploaded", aid, now
            m.reviewed_at = m.reviewed_by = m.review_reason = None
            material_event(session, "material.obtained", req, m, now, via="upload", media_type=kept.media_type)
        return m
    except BaseException:
        await files.delete_objects(store, aid)
        raise


async def review(session: AsyncSession, principal: Principal, request_id: str, code: str, decision: str,
                 reason: str | None, *, now: datetime) -> RequestMaterial:
    async with session.begin():
        req = await get_request(session, principal, request_id)
        if principal.role not in REVIEWERS or not may_act(principal, req, "review"):
            raise Forbidden(("只有诉求所在地的工作人员可以核验材料", "Only staff of the request's place review materials"),
                            code="material.not_reviewer")
        m = await _material(session, req.id, code, lock=True)
        if m.status != "uploaded":
            raise Conflict("material.not_uploaded", (f"该材料当前状态为 {m.status}，没有待核验的文件",
                                                     f"The material is {m.status}; there is no file to review"),
                           extra={"status": m.status})
        if decision == "rejected" and not (reason or "").strip():
            raise invalid("reason", "material.reason_required", "退回材料时须说明原因", "Say why the material is rejected")
        m.status, m.reviewed_at, m.reviewed_by, m.updated_at = decision, now, principal.caller, now
        m.review_reason = reason.strip() if decision == "rejected" and reason else None
        material_event(session, f"material.{decision}", req, m, now, reason=m.review_reason)
        if decision == "verified":
            await complete_if_present(session, req, now)
    return m
