"""Idempotency-Key for POSTs that create things: a retried kiosk submission creates one record.

The key row is inserted in the same transaction as the record it guards. A concurrent retry blocks on the
unique key until the first commits, then fails with IntegrityError and replays the stored response instead.

A route takes the key as one dependency, built once per service on its record model
(`Idempotent = idempotent_post(IdempotencyRecord)` in the service's deps module), and runs its create through it:

    async def create_item(body: ItemCreate, idem: Idempotent, ...):
        async def create(session): return 201, await service.create_item(session, ...)
        return await idem.run(body, create)
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import Clock
from common.db import Database
from common.deps import AppClock, AppDb, CurrentPrincipal
from common.errors import Problem

MAX_KEY_LENGTH = 200


def request_fingerprint(method: str, path: str, body: Any) -> str:
    """What a stored key remembers of its request. A pydantic body is dumped in JSON mode (what
    jsonable_encoder makes of it, without its walk)."""
    doc = body.model_dump(mode="json") if isinstance(body, BaseModel) else jsonable_encoder(body)
    raw = json.dumps([method, path, doc], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def check_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise Problem(400, "bad_request", ("Idempotency-Key 长度须为 1–200 个字符",
                                           "Idempotency-Key must be 1–200 characters"))


def record_values(*, caller: str, key: str, fingerprint: str, status: int, body: str, now: datetime) -> dict:
    """An idempotency record's row: the response stored under (caller, key)."""
    return {"caller": caller, "key": key, "request_hash": fingerprint, "status_code": status,
            "response_body": body, "created_at": now}


def stored_keys_query(model: type):
    """The records of some (caller, key) pairs, by both (the primary key is (caller, key): by key alone a
    lookup reads the whole table): parameters `callers` and `keys`."""
    return select(model).where(model.caller.in_(bindparam("callers", expanding=True)),
                               model.key.in_(bindparam("keys", expanding=True)))


async def stored_record(db: Database, model: type, caller: str, key: str) -> Any | None:
    async with db.session() as session:
        return await session.get(model, (caller, key))


def created(body: str | bytes, status: int, *, keyed: bool) -> Response:
    """A first answer (not a replay): under a key it says so."""
    headers = {"Idempotency-Replayed": "false"} if keyed else None
    return Response(body.encode() if isinstance(body, str) else body, status_code=status,
                    media_type="application/json", headers=headers)


async def run_idempotent(
    db: Database,
    model: type,
    *,
    key: str | None,
    caller: str,
    fingerprint: str,
    now: datetime,
    create: Callable[[AsyncSession], Awaitable[tuple[int, Any]]],
) -> Response:
    """Run `create(session)` (which must not commit) once per (caller, key); replay the response afterwards."""
    check_key(key)
    if key is None:
        async with db.session() as session, session.begin():
            status, body = await create(session)
        return JSONResponse(jsonable_encoder(body), status_code=status)

    stored = await stored_record(db, model, caller, key)
    if stored is not None:
        return replay(stored, fingerprint)
    try:
        async with db.session() as session, session.begin():
            row = model(**record_values(caller=caller, key=key, fingerprint=fingerprint, status=0, body="",
                                        now=now))
            session.add(row)
            await session.flush()  # takes the unique key now, before the work
            status, body = await create(session)
            encoded = jsonable_encoder(body)
            row.status_code = status
            row.response_body = json.dumps(encoded, ensure_ascii=False)
        return JSONResponse(encoded, status_code=status, headers={"Idempotency-Replayed": "false"})
    except IntegrityError:
        async with db.session() as session:
            stored = (await session.execute(
                select(model).where(model.caller == caller, model.key == key))).scalar_one_or_none()
            if stored is None:
                raise
            return replay(stored, fingerprint)


def replay(stored: Any, fingerprint: str) -> Response:
    """The stored response of a retried key, byte for byte; the same key with other content is a 422."""
    if stored.request_hash != fingerprint:
        raise Problem(422, "idempotency_key_reused", ("同一 Idempotency-Key 已用于内容不同的请求",
                                                      "This Idempotency-Key was used for a different request"))
    return Response(stored.response_body.encode(), status_code=stored.status_code, media_type="application/json",
                    headers={"Idempotency-Replayed": "true"})


class IdempotentPost:
    """A POST's Idempotency-Key with what keeps it: the app's database and clock, the service's record model, the
    caller and the request's path (what a fingerprint remembers beside the content)."""

    __slots__ = ("db", "model", "key", "caller", "path", "clock")

    def __init__(self, db: Database, model: type, *, key: str | None, caller: str, path: str, clock: Clock):
        self.db, self.model, self.key, self.caller, self.path, self.clock = db, model, key, caller, path, clock

    def fingerprint(self, content: Any) -> str:
        return request_fingerprint("POST", self.path, content)

    async def stored(self) -> Any | None:
        """The record stored under the key (None without a key or before a first answer)."""
        return await stored_record(self.db, self.model, self.caller, self.key) if self.key else None

    async def replay_stored(self, content: Any) -> Response | None:
        """For work prepared before the transaction: the stored answer if the key has one (checked first)."""
        check_key(self.key)
        stored = await self.stored()
        return replay(stored, self.fingerprint(content)) if stored is not None else None

    async def run(self, content: Any, create: Callable[[AsyncSession], Awaitable[tuple[int, Any]]], *,
                  now: datetime | None = None) -> Response:
        """`run_idempotent` under this key: `content` is what the fingerprint remembers of the request (the body,
        or what else tells two requests to one path apart); `now` stamps the record (the clock's now by default)."""
        return await run_idempotent(self.db, self.model, key=self.key, caller=self.caller,
                                    fingerprint=self.fingerprint(content),
                                    now=self.clock.now() if now is None else now, create=create)


def idempotent_post(model: type) -> Any:
    """The dependency giving a route its `IdempotentPost` on `model` (the service's IdempotencyRecord). The header is
    declared here, once: `common.openapi_contract` gives its schema the length `check_key` enforces."""

    async def idempotency_key(request: Request, db: AppDb, principal: CurrentPrincipal, clock: AppClock,
                              key: str | None = Header(None, alias="Idempotency-Key")) -> IdempotentPost:
        return IdempotentPost(db, model, key=key, caller=principal.caller, path=request.url.path, clock=clock)

    return Annotated[IdempotentPost, Depends(idempotency_key)]
