"""Request photos and material files: who may upload and read them, the checks on their content, storing them
(nothing stored on a refusal, nothing linked without its object), and the retention purge.

An upload arrives as a file (the multipart part, spooled to disk by the form parser) and is never read whole into
memory: `measure` reads it in pieces to check its size (at most the kind's limit + 1 byte). It is checked before
any byte is stored (the request is visible and open, the caller may add to it, room for another photo, the
material awaits a file), then examined from the file (`content.examine`), then streamed to the object store,
and only then linked in one transaction that checks the request again under its row lock; if that transaction
fails, the objects are deleted. A store that is down is a 503 problem and leaves the request as it was.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.crypto import FieldProtection
from common.db import Database
from common.errors import Conflict, Forbidden, NotFound, Problem, field_error
from common.grants import GrantInfo, GrantSource, live_grant_of, no_grant
from common.ids import new_id
from common.storage import CHUNK, ObjectStore, StoreUnavailable, file_chunks, one_chunk
from common.storage.encryption import encrypt_stream, new_data_key, wrap_key
from common.storage.uploads import KIND_LIMITS
from svc_services.attachments.content import EXAMINERS, Kept, Refusal, examine
from svc_services.attachments.models import Attachment
from svc_services.requests.access import can_see, may_act
from svc_services.requests.lifecycle import GRID, HANDLERS, MANAGERS, OWNER, TERMINAL
from svc_services.requests.models import ServiceRequest
from svc_services.requests.service import get_request

MAX_PHOTOS = 9
# how long an upload waits for an examiner thread (content.EXAMINERS); with the largest photo's examination (~2.5 s
# on a loaded 2-core machine) the answer stays within the gateway's upstream deadline (10 s after the last byte)
EXAMINE_WAIT_SECONDS = 4.0
PHOTO_UPLOADERS = OWNER + MANAGERS + GRID + HANDLERS
MATERIAL_UPLOADERS = OWNER + MANAGERS + GRID
MATERIAL_READERS = OWNER + MANAGERS + GRID + ("dept_staff", "system")
# the exchange catalogue's resources a department system's download is granted under, by kind of file
# (gateway/exchange/catalogue_data.py declares them; the grant model names a resource, not a place)
FILE_RESOURCES = {"material": "services.materials", "photo": "services.request_photos"}
ATTACHMENT_UNSEEN = NotFound("attachment.not_found", ("附件不存在或无权查看", "Attachment not found"))
_BAD_NAME = set('/\\\x00') | {chr(c) for c in range(32)}


def file_problem(status: int, code: str, zh: str, en: str) -> Problem:
    return Problem(status, code, (zh, en), errors=[field_error("file", code, zh, en)])


def check_name(name: str | None) -> None:
    """The client's file name is never used to store anything; one that tries a path is refused outright."""
    if name is None:
        return
    if len(name) > 200 or ".." in name or any(c in _BAD_NAME for c in name):
        raise file_problem(422, "attachment.bad_name", "文件名不能包含路径（../、/、\\）或控制字符",
                           "The file name must not contain a path (../, /, \\) or control characters")


def check_size(kind: str, size: int | None) -> None:
    limit = KIND_LIMITS[kind]
    if size is not None and size > limit:
        raise file_problem(413, "attachment.too_large", f"文件超过 {limit // (1024 * 1024)} MiB 的上限",
                           f"The file exceeds the {limit // (1024 * 1024)} MiB limit")
    if size == 0:
        raise file_problem(422, "attachment.empty", "文件为空", "The file is empty")


def measure(kind: str, fh: BinaryIO) -> int:
    """The file's size, read from its start a chunk at a time and never past the kind's limit + 1 byte (run in a
    worker thread: a spooled file may be on disk)."""
    limit = KIND_LIMITS[kind]
    fh.seek(0)
    size = 0
    while size <= limit and (chunk := fh.read(min(CHUNK, limit + 1 - size))):
        size += len(chunk)
    check_size(kind, size)
    fh.seek(0)
    return size


def check_open(req: ServiceRequest) -> None:
    if req.state in TERMINAL:
        raise Conflict("attachment.request_closed", ("诉求已结束（已关闭、撤销、合并或不予受理），不能再上传附件",
                                                     "The request has ended; no more files can be added"))


def may_upload(principal: Principal, req: ServiceRequest, roles: tuple[str, ...]) -> None:
    if principal.role not in roles or not may_act(principal, req, "attach"):
        raise Forbidden(("无权为该诉求上传附件", "You may not add files to this request"), code="attachment.forbidden")


async def photo_count(session: AsyncSession, request_id: str) -> int:
    return (await session.execute(select(func.count()).select_from(Attachment).where(
        Attachment.request_id == request_id, Attachment.kind == "photo"))).scalar_one()


def too_many() -> Conflict:
    return Conflict("attachment.too_many_photos", (f"每个诉求最多 {MAX_PHOTOS} 张照片", f"At most {MAX_PHOTOS} photos per request"))


async def examine_file(kind: str, upload: BinaryIO) -> Kept:
    """`content.examine` on an examiner thread. One that has not started within `EXAMINE_WAIT_SECONDS` (both
    threads busy with large photos, more uploads queued) is taken back and answered 503 with Retry-After: a
    queue without bound ran uploads past the gateway's upstream deadline, a 504 for a photo then stored anyway."""
    job = EXAMINERS.submit(examine, kind, upload)
    done = asyncio.wrap_future(job)
    try:
        await asyncio.wait({done}, timeout=EXAMINE_WAIT_SECONDS)
        if not done.done() and job.cancel():
            raise Problem(503, "attachment.busy", ("文件检查繁忙，请稍后重试（未保存任何内容）",
                                                   "Files are being examined at capacity; retry shortly (nothing was stored)"),
                          headers={"Retry-After": "2"})
        return await done
    except Refusal as r:
        raise file_problem(r.status, r.code, r.zh, r.en) from None


def store_down(exc: Exception | None = None) -> Problem:
    return Problem(503, "storage.unavailable", ("文件存储暂不可用，请稍后重试（诉求本身不受影响）",
                                                "File storage is unavailable; retry later (the request is unaffected)"),
                   headers={"Retry-After": "5"})


async def put_objects(store: ObjectStore, attachment_id: str, kept: Kept, *, encrypt: bool,
                      protection: FieldProtection | None) -> dict[str, Any]:
    """The file (and its thumbnail) in the store; the columns that describe them. Nothing left on a failure."""
    key = new_data_key() if encrypt else None
    thumb_id = f"{attachment_id}-thumb"

    def body(chunks, oid: str):
        return encrypt_stream(chunks, key, oid) if key is not None else chunks

    # a re-encoded image is held (bounded by its pixel limit); a file kept as it is streams from its spool
    main_chunks = one_chunk(kept.data) if kept.data is not None else file_chunks(kept.file)
    try:
        main = await store.put(attachment_id, body(main_chunks, attachment_id), limit=2 * kept.size + 4096,
                               content_type="application/octet-stream" if encrypt else kept.media_type)
        thumb = None
        if kept.thumbnail is not None:
            thumb = await store.put(thumb_id, body(one_chunk(kept.thumbnail), thumb_id),
                                    limit=2 * len(kept.thumbnail) + 4096,
                                    content_type="application/octet-stream" if encrypt else "image/jpeg")
    except StoreUnavailable as exc:
        await delete_objects(store, attachment_id)
        raise store_down(exc) from None
    return {"sha256": main.sha256, "stored_size": main.size, "thumb_sha256": thumb.sha256 if thumb else None,
            "encrypted": key is not None,
            "wrapped_key": wrap_key(protection.cipher, key, attachment_id) if key is not None else None}


async def delete_objects(store: ObjectStore, attachment_id: str) -> None:
    for oid in (attachment_id, f"{attachment_id}-thumb"):
        try:
            await store.delete(oid)
        except StoreUnavailable:
            pass  # an object without a row: the purge's orphan sweep takes it (ids are unguessable)


async def upload_photo(db: Database, store: ObjectStore, principal: Principal, request_id: str, *,
                       upload: BinaryIO, note: str | None, now: datetime) -> Attachment:
    async with db.session() as session:
        req = await get_request(session, principal, request_id)
        may_upload(principal, req, PHOTO_UPLOADERS)
        check_open(req)
        if await photo_count(session, req.id) >= MAX_PHOTOS:
            raise too_many()
    kept = await examine_file("photo", upload)
    aid = new_id()
    cols = await put_objects(store, aid, kept, encrypt=False, protection=None)
    try:
        async with db.session() as session, session.begin():
            req = await session.get(ServiceRequest, request_id, with_for_update=True)
            check_open(req)
            if await photo_count(session, req.id) >= MAX_PHOTOS:
                raise too_many()
            row = new_row(aid, req, principal, "photo", kept, cols, store, note=note, now=now)
            session.add(row)
        return row
    except BaseException:
        await delete_objects(store, aid)
        raise


def new_row(aid: str, req: ServiceRequest, principal: Principal, kind: str, kept: Kept, cols: dict[str, Any],
            store: ObjectStore, *, now: datetime, note: str | None = None, material_id: str | None = None) -> Attachment:
    return Attachment(id=aid, request_id=req.id, kind=kind, material_id=material_id, stage=req.state, note=note,
                      media_type=kept.media_type, size=kept.size, width=kept.width, height=kept.height,
                      store=store.name, uploaded_by=principal.caller, uploaded_role=principal.role, created_at=now,
                      **cols)


async def list_attachments(session: AsyncSession, principal: Principal, request_id: str) -> list[Attachment]:
    req = await get_request(session, principal, request_id)
    stmt = select(Attachment).where(Attachment.request_id == req.id).order_by(Attachment.created_at, Attachment.id)
    if principal.role not in MATERIAL_READERS:  # a provider working the request sees its photos only
        stmt = stmt.where(Attachment.kind == "photo")
    return list((await session.execute(stmt)).scalars())


def department_system(principal: Principal) -> bool:
    """A department's own system (its client-credentials token: member `dept-<code>`, role dept_staff)."""
    return principal.user == principal.member and principal.role == "dept_staff" and bool(principal.scope_values("dept"))


async def readable(session: AsyncSession, principal: Principal, attachment_id: str, *,
                   grants: GrantSource | None = None,
                   now: datetime | None = None) -> tuple[Attachment, ServiceRequest, GrantInfo | None]:
    """The attachment, when the caller may see its request (and, for a material, its contents), and for a
    department system the grant it reads under (`FILE_RESOURCES`, docs/adr/0005)."""
    grant = None
    if principal.role == "system" or principal.user == principal.member:
        # member systems read a request's files only as a department under a grant on that kind of file; one that
        # holds none for either kind is refused before anything is looked up
        if not department_system(principal):
            raise Problem(403, "attachment.system_forbidden", ("成员系统无权读取申请附件", "Member systems may not read request files"))
        held = {kind: await live_grant_of(grants, principal, res, now) for kind, res in FILE_RESOURCES.items()}
        if not any(held.values()):
            raise no_grant(FILE_RESOURCES["material"])
    att = await session.get(Attachment, attachment_id) if len(attachment_id) <= 36 else None
    if att is None:
        raise ATTACHMENT_UNSEEN
    if principal.user == principal.member:
        grant = held[att.kind]
        if grant is None:
            raise no_grant(FILE_RESOURCES[att.kind])
    req = await session.get(ServiceRequest, att.request_id)
    # a department (its staff or its system under a grant) only for requests dispatched or escalated to it
    if req is None or not can_see(principal, req):
        raise ATTACHMENT_UNSEEN
    if att.kind == "material" and principal.role not in MATERIAL_READERS:
        raise ATTACHMENT_UNSEEN
    if att.purged_at is not None:
        raise Problem(410, "attachment.purged", ("附件已按保存期限删除", "The file was deleted at the end of its retention"))
    return att, req, grant


def retention_cutoffs(now: datetime, settings) -> dict[str, datetime]:
    return {"photo": now - timedelta(days=settings.photo_retention_days),
            "material": now - timedelta(days=settings.material_retention_days)}
