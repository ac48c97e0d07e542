"""Serving a stored file: checked per object (`service.readable`), streamed from the store (decrypted for a
material), and for a material a record in the person's access log first.

svc_residents keeps the access log (one `access_audit` row per clear read of a person's data, which the person may
read, PIPL's right to know). A material read is written to svc_services' outbox as a `person_access.` feed row in
the same transaction that allows the read, and the feed relay delivers it to svc_residents (ADR 0007:
`PUT /residents/v1/access_reads/{read id}`), so no read is served that the log will not have, even while
svc_residents is away.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.context import request_id_var
from common.crypto import FieldProtection
from common.errors import NotFound, Problem
from common.grants import GrantInfo, GrantSource
from common.ids import new_id
from common.outbox import record_event
from common.storage import ObjectMissing, ObjectStore, StoreUnavailable
from common.storage.encryption import decrypt_stream, unwrap_key
from svc_services.attachments.models import Attachment
from svc_services.attachments.service import readable, store_down
from svc_services.base import OutboxEvent
from svc_services.materials.models import RequestMaterial
from svc_services.requests.models import ServiceRequest

ACCESS_FEED = "person_access."
EXTENSIONS = {"image/jpeg": "jpg", "application/pdf": "pdf"}


def log_read(session: AsyncSession, principal: Principal, att: Attachment, req: ServiceRequest,
             material: RequestMaterial | None, variant: str, now: datetime, grant: GrantInfo | None = None) -> None:
    """The access-log row of one read; a department system's names the department and the grant it read under."""
    name = material.name if material is not None else "材料"
    extra = {"service_request": req.id, "attachment_id": att.id, "variant": variant}
    if grant is not None:
        extra |= {"department": principal.scope_values("dept")[0], "grant_id": grant.id,
                  "grant_resource": grant.resource, "grant_purpose": grant.purpose[:200]}
    record_event(session, OutboxEvent, f"{ACCESS_FEED}material_read", subject=new_id(), now=now,
                 community=req.community, grid=req.grid,
                 data={"person_id": req.person_id, "occurred_at": now.isoformat(), "member": principal.member,
                       "user_id": principal.user, "role": principal.role, "acting_for": principal.acting_for,
                       "fields": [f"material:{material.code if material else 'file'}"],
                       "purpose": f"诉求 {req.id} 材料（{name}）查阅 material read"[:200],
                       "request_id": request_id_var.get(),
                       "extra": extra})


async def open_content(session: AsyncSession, store: ObjectStore, protection: FieldProtection | None,
                       principal: Principal, attachment_id: str, variant: str, *, now: datetime,
                       grants: GrantSource | None = None) -> tuple[Attachment, AsyncIterator[bytes], bytes]:
    """The attachment, its bytes as a stream, and the first chunk already read (so a store that is down is a
    503 before the answer starts)."""
    async with session.begin():
        att, req, grant = await readable(session, principal, attachment_id, grants=grants, now=now)
        if variant == "thumbnail" and att.thumb_sha256 is None:
            raise NotFound("attachment.no_thumbnail", ("该附件没有缩略图", "This file has no thumbnail"))
        if att.kind == "material" and req.person_id:
            material = await session.get(RequestMaterial, att.material_id) if att.material_id else None
            log_read(session, principal, att, req, material, variant, now, grant)
    chunks, first = await open_object(store, protection, att, variant)
    return att, chunks, first


async def open_object(store: ObjectStore, protection: FieldProtection | None, att: Attachment,
                      variant: str = "file") -> tuple[AsyncIterator[bytes], bytes]:
    """The stored bytes of `att` as a stream, the first chunk already read: a store that is down is a 503 (a
    missing object a 404) before the answer starts."""
    oid = att.id if variant == "file" else f"{att.id}-thumb"
    chunks = store.get(oid, sha256=att.sha256 if variant == "file" else att.thumb_sha256)
    if att.encrypted:
        chunks = decrypt_stream(chunks, unwrap_key(protection.cipher, att.wrapped_key, att.id), oid)
    try:
        first = await anext(chunks, b"")
    except StoreUnavailable as exc:
        raise store_down(exc) from None
    except ObjectMissing:
        raise Problem(404, "attachment.object_missing", ("附件文件缺失，请联系运维", "The stored file is missing")) from None
    return chunks, first


async def stream(first: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in chunks:
        yield chunk
