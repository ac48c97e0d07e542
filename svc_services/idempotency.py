"""Idempotency-Key for POSTs whose work cannot run inside one database transaction (it calls other systems and
commits as it goes, e.g. fetching once-only materials).

What is the same rule as every other keyed POST comes from `common.idempotency`: the key's length (`check_key`),
the fingerprint and the record under (caller, key) (`IdempotentPost`), the replay of a stored answer or the 422 for
a key reused with other content (`replay`), the record's row (`record_values`). What differs is only the order:
`common.idempotency.run_idempotent` takes the key row first, in the work's transaction, which here would hold
SQLite's single write lock across the work's HTTP calls and its own commits. So the stored answer is looked up
first; otherwise the work runs, and its answer is stored under the key in a short transaction of its own.
Concurrent calls with one key in this process wait for each other, so the second replays the first; another
replica's answer stored meanwhile stands; a problem raised by the work is not stored (a retry runs it again)."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError

from common.idempotency import IdempotentPost, check_key, record_values, replay

# one lock per (database, caller, key) while a call holds it: the calls of this process take turns
_LOCKS: dict[tuple[Any, str, str], asyncio.Lock] = {}


async def run_once_outside_transaction(idem: IdempotentPost, content: Any,
                                       work: Callable[[], Awaitable[tuple[int, Any]]]) -> Response:
    """`work()` (which commits what it does) once per (caller, key); its answer replayed afterwards. `content` is
    what the fingerprint remembers of the request, as for `IdempotentPost.run`."""
    if idem.key is None:
        status, body = await work()
        return JSONResponse(jsonable_encoder(body), status_code=status)
    check_key(idem.key)
    fingerprint = idem.fingerprint(content)
    held = (idem.db, idem.caller, idem.key)
    lock = _LOCKS.setdefault(held, asyncio.Lock())
    try:
        async with lock:
            stored = await idem.stored()
            if stored is not None:
                return replay(stored, fingerprint)
            status, body = await work()
            encoded = jsonable_encoder(body)
            try:
                async with idem.db.session() as session, session.begin():
                    session.add(idem.model(**record_values(
                        caller=idem.caller, key=idem.key, fingerprint=fingerprint, status=status,
                        body=json.dumps(encoded, ensure_ascii=False), now=idem.clock.now())))
            except IntegrityError:  # another replica answered the same key meanwhile: its answer stands
                stored = await idem.stored()
                if stored is None:
                    raise
                return replay(stored, fingerprint)
            return JSONResponse(encoded, status_code=status, headers={"Idempotency-Replayed": "false"})
    finally:
        if not lock.locked():
            _LOCKS.pop(held, None)
