"""Sensitive fields of a person: validation, encryption, blind index and masking, on top of common.crypto.

The associated data binds each ciphertext to its row and field, so a ciphertext copied into another row or
column fails to decrypt.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from common.errors import invalid

from common.crypto import FieldProtection, mask_id_number, mask_phone
from common.deps import state
from common.validators import ValidationFailure, normalize_mobile, parse_resident_id

ID_DOMAIN = "person.id_number"
PHONE_DOMAIN = "person.phone"


@dataclass(frozen=True)
class ProtectedValue:
    ciphertext: str
    blind_index: str
    masked: str


def aad(person_id: str, field: str) -> str:
    return f"svc_residents:persons:{person_id}:{field}"


def check_id_number(value: str, field: str = "id_number", *, today: date | None = None):
    """`today` (the app's clock) also refuses a birth date in the future: given where a person is recorded."""
    try:
        return parse_resident_id(value, today=today)
    except ValidationFailure as exc:
        raise invalid(field, exc.code, exc.message_zh, exc.message_en) from None


def check_phone(value: str, field: str = "phone") -> str:
    try:
        return normalize_mobile(value)
    except ValidationFailure as exc:
        raise invalid(field, exc.code, exc.message_zh, exc.message_en) from None


def load(path) -> FieldProtection:
    return FieldProtection.from_file(path, create=True)


# what an endpoint takes (`protection: AppProtection`): the keys `load` gave the app at start-up
AppProtection = Annotated[FieldProtection, state("protection")]


def _cipher(protection: FieldProtection):
    return protection.cipher


def _index(protection: FieldProtection):
    return protection.blind_index


def fingerprint_digest(protection: FieldProtection, field: str, raw: str) -> str:
    """A keyed digest of a raw sensitive input, for idempotency fingerprints."""
    return _index(protection).digest(raw, domain=f"fingerprint.{field}")


def id_number_index(protection: FieldProtection, number: str) -> str:
    return _index(protection).digest(number, domain=ID_DOMAIN)


def phone_index(protection: FieldProtection, phone: str) -> str:
    return _index(protection).digest(phone, domain=PHONE_DOMAIN)


def protect_id_number(protection: FieldProtection, person_id: str, number: str, *,
                      blind_index: str | None = None) -> ProtectedValue:
    """`blind_index`: the number's index when the caller computed it already (the importer, for duplicates)."""
    return ProtectedValue(_cipher(protection).encrypt(number, aad=aad(person_id, "id_number")),
                          blind_index or id_number_index(protection, number), mask_id_number(number))


def protect_phone(protection: FieldProtection, person_id: str, phone: str) -> ProtectedValue:
    return ProtectedValue(_cipher(protection).encrypt(phone, aad=aad(person_id, "phone")),
                          phone_index(protection, phone), mask_phone(phone))


def reveal(protection: FieldProtection, person_id: str, field: str, ciphertext: str | None) -> str | None:
    if ciphertext is None:
        return None
    return _cipher(protection).decrypt(ciphertext, aad=aad(person_id, field))
