"""Idempotency-Key for POSTs whose work cannot run inside one database transaction (it calls other systems and
commits as it goes, e.g. fetching once-only materials): `common.idempotency.run_idempotent` holds its key row in
the work's transaction, which would keep SQLite's single write lock across HTTP calls and the work's own commits.

Here the stored response is looked up first (and replayed, or refused with 422 if the key came with a different
request, exactly as `common.idempotency` does); otherwise the work runs, and its response is stored under the key
in a short transaction of its own. Concurrent calls with one key in this process wait for each other, so the
second replays the first; a problem raised by the work is not stored (a retry runs it again)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from common.errors import Problem
from common.idempotency import MAX_KEY_LENGTH, replay
from svc_services.base import IdempotencyRecord



async def run_once_outside_transaction(app: FastAPI, *, key: str | None, caller: str, fingerprint: str,
                                       work: Callable[[], Awaitable[tuple[int, Any]]]) -> JSONResponse:
    if key is None:
        status, body = await work()
        return JSONResponse(jsonable_encoder(body), status_code=status)
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise Problem(400, "bad_request", ("Idempotency-Key 长度须为 1–200 个字符",
                                           "Idempotency-Key must be 1–200 characters"))
    db = app.state.db
    locks: dict[tuple[str, str], asyncio.Lock] | None = getattr(app.state, "idempotency_locks", None)
    if locks is None:
        locks = app.state.idempotency_locks = {}
    lock = locks.setdefault((caller, key), asyncio.Lock())
    try:
        async with lock:
            async with db.session() as session:
                stored = await session.get(IdempotencyRecord, (caller, key))
            if stored is not None:
                return replay(stored, fingerprint)
            status, body = await work()
            encoded = jsonable_encoder(body)
            try:
                async with db.session() as session, session.begin():
                    session.add(IdempotencyRecord(caller=caller, key=key, request_hash=fingerprint,
                                                  status_code=status,
                                                  response_body=json.dumps(encoded, ensure_ascii=False),
                                                  created_at=app.state.clock.now()))
            except IntegrityError:  # another replica answered the same key meanwhile: its answer stands
                async with db.session() as session:
                    stored = await session.get(IdempotencyRecord, (caller, key))
                if stored is None:
                    raise
                return replay(stored, fingerprint)
            return JSONResponse(encoded, status_code=status, headers={"Idempotency-Replayed": "false"})
    finally:
        if not lock.locked():
            locks.pop((caller, key), None)
