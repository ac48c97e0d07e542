"""Re-encrypt every encrypted field under the keyring's active (newest) key, so an old key can be removed.

- Batches of `batch_size` persons in id order, each batch one transaction: an interrupted run keeps what its
  finished batches did, and running again picks up exactly what is still under an old key (resumable).
- Only values whose key id is not the active one are touched, so a second run changes nothing (idempotent).
- Each value is written with a compare-and-set on the old ciphertext: a value changed by a concurrent request
  between the read and the write is left alone (it was re-encrypted under the active key by that write anyway).
- The plaintext and the blind-index key do not change, so the blind indexes stay valid; the associated data
  (row id and field) is kept, so a value still decrypts only in its own row and column.
- A value that does not decrypt (its key is missing from the keyring, or it was tampered with) is reported by
  row id and field, and left as it is.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select, update

from common.crypto import TOKEN_VERSION, DecryptionError, FieldProtection
from common.db import Database
from svc_residents.persons.models import Person
from svc_residents.protection import aad

FIELDS = ("id_number", "phone")  # persons.<field>_enc


@dataclass
class ReencryptResult:
    active_key_id: str
    scanned: int = 0
    reencrypted: int = 0  # values
    batches: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (person id, field, reason)


def _stale(column, prefix: str):
    return and_(column.is_not(None), ~column.startswith(prefix, autoescape=True))


async def remaining(db: Database, protection: FieldProtection) -> int:
    """Values still under an old key."""
    prefix = f"{TOKEN_VERSION}.{protection.cipher.active_key_id}."
    n = 0
    async with db.session() as session:
        for name in FIELDS:
            col = getattr(Person, f"{name}_enc")
            n += (await session.execute(select(func.count()).select_from(Person).where(_stale(col, prefix)))).scalar_one()
    return n


async def reencrypt(db: Database, protection: FieldProtection, *, batch_size: int = 500,
                    on_batch: Callable[[int], None] | None = None) -> ReencryptResult:
    cipher = protection.cipher
    prefix = f"{TOKEN_VERSION}.{cipher.active_key_id}."
    result = ReencryptResult(active_key_id=cipher.active_key_id)
    after = ""
    while True:
        async with db.session() as session, session.begin():
            rows = (await session.execute(
                select(Person.id, Person.id_number_enc, Person.phone_enc)
                .where(Person.id > after, or_(*[_stale(getattr(Person, f"{n}_enc"), prefix) for n in FIELDS]))
                .order_by(Person.id).limit(batch_size))).all()
            if not rows:
                break
            done = 0
            for row in rows:
                for name in FIELDS:
                    old = getattr(row, f"{name}_enc")
                    if old is None or old.startswith(prefix):
                        continue
                    try:
                        new = cipher.rotate(old, aad=aad(row.id, name))
                    except DecryptionError as exc:
                        result.failures.append((row.id, name, str(exc)))
                        continue
                    col = getattr(Person, f"{name}_enc")
                    res = await session.execute(update(Person).where(Person.id == row.id, col == old)
                                                .values({col.key: new}).execution_options(synchronize_session=False))
                    done += res.rowcount
            after = rows[-1].id
        result.scanned += len(rows)
        result.reencrypted += done
        result.batches += 1
        if on_batch is not None:
            on_batch(len(rows))
        if len(rows) < batch_size:
            break
    return result
