"""Re-wrap the data keys of encrypted files (materials) under the field keys' active key, so an old field key can
be removed from svc_services' keyring (`onenet attachments rewrap-keys`). Only the wrapped keys change, a few bytes
a row: the objects, sealed under their own data keys (`common.storage.encryption`), are never re-written.

As svc_residents' re-encryption: batches in id order, each one transaction (resumable); only keys wrapped under
another key id are touched (a second run changes nothing); each write is a compare-and-set on the old value; a key
that does not unwrap (its field key is gone, or the value was tampered with) is reported and left as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select, update

from common.crypto import TOKEN_VERSION, DecryptionError, FieldProtection
from common.db import Database
from common.storage.encryption import rewrap
from svc_services.attachments.models import Attachment


@dataclass
class RewrapResult:
    active_key_id: str
    scanned: int = 0
    rewrapped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)   # (attachment id, reason)


def _stale(prefix: str):
    return (Attachment.wrapped_key.is_not(None)) & ~Attachment.wrapped_key.startswith(prefix, autoescape=True)


async def remaining(db: Database, protection: FieldProtection) -> int:
    """Data keys still wrapped under an old field key."""
    prefix = f"{TOKEN_VERSION}.{protection.cipher.active_key_id}."
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(Attachment).where(_stale(prefix)))).scalar_one()


async def rewrap_keys(db: Database, protection: FieldProtection, *, batch_size: int = 500) -> RewrapResult:
    cipher = protection.cipher
    prefix = f"{TOKEN_VERSION}.{cipher.active_key_id}."
    result = RewrapResult(active_key_id=cipher.active_key_id)
    after = ""
    while True:
        async with db.session() as session, session.begin():
            rows = (await session.execute(select(Attachment.id, Attachment.wrapped_key)
                                          .where(Attachment.id > after, _stale(prefix))
                                          .order_by(Attachment.id).limit(batch_size))).all()
            for row in rows:
                try:
                    new = rewrap(cipher, row.wrapped_key, row.id)
                except DecryptionError as exc:
                    result.failures.append((row.id, str(exc)))
                    continue
                res = await session.execute(update(Attachment)
                                            .where(Attachment.id == row.id, Attachment.wrapped_key == row.wrapped_key)
                                            .values(wrapped_key=new).execution_options(synchronize_session=False))
                result.rewrapped += res.rowcount
        result.scanned += len(rows)
        if len(rows) < batch_size:
            return result
        after = rows[-1].id
