"""Open311 POST bodies and GeoReport v2's `media` file (issue 27).

A POST is form-encoded, JSON, or multipart/form-data; a multipart one may carry one file field, `media`, an image.
That photo goes the way of every request photo (`attachments.service`): its name and size checked, its type read
from its bytes, re-encoded without EXIF/GPS with a thumbnail, and streamed to the object store. The order keeps
nothing half-written: the file is checked and stored first (a bad file, or a store that is down, creates no
request), then the request is submitted (a refused submission deletes the stored objects), then the photo is
linked to the new request in one transaction (a failure there deletes the objects too). The GET documents name it
in `media_url` by a signed URL wherever the public may see the photo (`open311.service.photo_public`).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from common.auth import Principal
from common.db import Database
from common.ids import new_id
from common.storage import ObjectStore
from svc_services.attachments import service as files
from svc_services.attachments.content import Kept
from svc_services.attachments.router import read_upload
from svc_services.requests.models import ServiceRequest

MEDIA_FIELD = "media"
MAX_FIELDS = 200


async def read_body(request: Request, max_plain: int, error: Callable[..., Exception]
                    ) -> tuple[list[tuple[str, str]], UploadFile | None]:
    """The POST's fields (the body's, then the query's) and its `media` file, if any. Only a multipart body may
    be larger than `max_plain` (the route takes file uploads, common.storage.uploads); `error(status, text)` makes
    the Open311 error to raise."""
    media_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    query = list(request.query_params.multi_items())
    if media_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=MAX_FIELDS)
        except (MultiPartException, HTTPException) as exc:
            raise error(400, f"Malformed multipart body: {getattr(exc, 'detail', None) or exc}") from None
        pairs, upload = [], None
        for k, v in form.multi_items():
            if isinstance(v, UploadFile):
                if k != MEDIA_FIELD:
                    raise error(400, f"{k}: only the file field 'media' is taken")
                upload = v
            else:
                pairs.append((k, v))
        return pairs + query, upload
    raw = await request.body()
    if len(raw) > max_plain:
        raise error(413, f"The body exceeds {max_plain} bytes (a file goes as 'media' in multipart/form-data)")
    if media_type == "application/json" and raw:
        try:
            doc = json.loads(raw)
        except ValueError:
            raise error(400, "Malformed JSON body") from None
        if not isinstance(doc, dict):
            raise error(400, "The body must be an object of fields")
        pairs = [(k, x if isinstance(x, str) else json.dumps(x))
                 for k, v in doc.items() for x in (v if isinstance(v, list) else [v])]
        return pairs + query, None
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True) + query, None
    except UnicodeDecodeError:
        raise error(400, "The form must be UTF-8") from None


async def examine(upload: UploadFile) -> Kept:
    """The photo checked as a request photo is (name, size, type from content, decoded and re-encoded); a
    `Problem` naming the field `file` otherwise (the router names it `media`)."""
    return await files.examine_file("photo", await read_upload("photo", upload))


async def store(store: ObjectStore, kept: Kept) -> tuple[str, dict[str, Any]]:
    """The photo and its thumbnail in the object store, under a new id: (id, the row's columns)."""
    aid = new_id()
    return aid, await files.put_objects(store, aid, kept, encrypt=False, protection=None)


async def link(db: Database, store: ObjectStore, principal: Principal, request_id: str, aid: str, kept: Kept,
               cols: dict[str, Any], now: datetime) -> None:
    """The stored photo linked to the request just submitted (its first photo: the submitter's own report, so
    no further role check); the objects deleted when this fails."""
    try:
        async with db.session() as session, session.begin():
            req = await session.get(ServiceRequest, request_id, with_for_update=True)
            session.add(files.new_row(aid, req, principal, "photo", kept, cols, store, now=now,
                                      note="Open311 media"))
    except BaseException:
        await files.delete_objects(store, aid)
        raise
