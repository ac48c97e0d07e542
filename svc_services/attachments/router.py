"""Request photos (≤ 9 a request, on any open step: the resident's, the worker's of the finished job) and the
download of every stored file, through the gateway, checked per object."""
from __future__ import annotations

import asyncio
from typing import Annotated, BinaryIO, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from common.acting import acts
from common.app import problem_responses
from common.crypto import FieldProtection
from common.deps import AppClock, AppDb, AppSettings, CurrentPrincipal, DbSession, state
from common.grants import AppGrants
from common.storage import ObjectStore
from svc_services.attachments import service
from svc_services.attachments.models import Attachment
from svc_services.attachments.reading import EXTENSIONS, open_content, stream
from svc_services.attachments.schemas import AttachmentOut

AppStore = Annotated[ObjectStore, state("store")]
AppProtection = Annotated[FieldProtection, state("protection")]
UPLOAD_ERRORS = problem_responses(404, 409, 413, 415, 422, 503)

router = APIRouter(prefix="/services/v1", tags=["attachments 照片与材料文件"])


def base_url(settings) -> str:
    return (settings.public_url or settings.gateway_url or "").rstrip("/")


def attachment_out(att: Attachment, settings, material_code: str | None = None) -> AttachmentOut:
    out = AttachmentOut.model_validate(att)
    out.material_code = material_code
    out.purged = att.purged_at is not None
    if not out.purged:
        url = f"{base_url(settings)}/services/v1/attachments/{att.id}/content"
        out.url = url
        out.thumbnail_url = f"{url}?variant=thumbnail" if att.thumb_sha256 else None
    return out


async def read_upload(kind: str, file: UploadFile) -> BinaryIO:
    """The upload's file (the form parser spools a part past 1 MiB to disk), its name and size checked; it is read
    in pieces from here on, never whole into memory."""
    service.check_name(file.filename)
    service.check_size(kind, file.size)
    await asyncio.to_thread(service.measure, kind, file.file)
    return file.file


@router.post("/requests/{request_id}/photos", status_code=201, response_model=AttachmentOut,
             dependencies=[acts("requests.submit")],
             responses=UPLOAD_ERRORS,
             summary="上传诉求照片（每诉求最多 9 张；任一未结束环节均可，如完工照片）Upload a photo of the request")
async def upload_photo(request_id: str, db: AppDb, store: AppStore, clock: AppClock, principal: CurrentPrincipal,
                       settings: AppSettings, file: UploadFile = File(description="JPEG、PNG 或 WebP，≤ 10 MiB"),
                       note: str | None = Form(default=None, max_length=200, description="说明，如“完工照片”")):
    upload = await read_upload("photo", file)
    att = await service.upload_photo(db, store, principal, request_id, upload=upload, note=note, now=clock.now())
    return attachment_out(att, settings)


@router.get("/requests/{request_id}/attachments", response_model=list[AttachmentOut],
            summary="诉求的照片与材料文件 The request's photos and material files")
async def list_attachments(request_id: str, session: DbSession, principal: CurrentPrincipal, settings: AppSettings):
    from svc_services.materials.models import RequestMaterial

    rows = await service.list_attachments(session, principal, request_id)
    ids = {a.material_id for a in rows if a.material_id}
    codes = {}
    if ids:
        from sqlalchemy import select
        codes = dict((await session.execute(select(RequestMaterial.id, RequestMaterial.code)
                                            .where(RequestMaterial.id.in_(ids)))).all())
    return [attachment_out(a, settings, codes.get(a.material_id)) for a in rows]


@router.get("/attachments/{attachment_id}/content", responses={200: {"content": {
                "image/jpeg": {}, "application/pdf": {}}}, **problem_responses(403, 404, 410, 503)},
            summary="下载附件（逐个对象鉴权；材料的每次读取记入本人的访问记录）Download a file")
async def download(attachment_id: str, session: DbSession, store: AppStore, protection: AppProtection,
                   clock: AppClock, principal: CurrentPrincipal, grants: AppGrants,
                   variant: Literal["file", "thumbnail"] = Query("file", description="原图 file / 缩略图 thumbnail")):
    att, chunks, first = await open_content(session, store, protection, principal, attachment_id, variant,
                                            now=clock.now(), grants=grants)
    media = att.media_type if variant == "file" else "image/jpeg"
    headers = {"Content-Disposition": f'inline; filename="{att.id}.{EXTENSIONS.get(media, "bin")}"',
               "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
               "Cache-Control": "private, no-store" if att.kind == "material" else "private, max-age=300"}
    if variant == "file":
        headers["Content-Length"] = str(att.size)
    return StreamingResponse(stream(first, chunks), media_type=media, headers=headers)
