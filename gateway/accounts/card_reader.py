"""The ID-card reader of a kiosk (身份证阅读器), emulated: what it read from the card's chip (number, name, chip
serial, validity), when, and a fresh nonce, signed with the reader's own Ed25519 key. The gateway holds the public
key registered for the kiosk (`POST /auth/v1/kiosk/devices`) and verifies each reading (gateway/accounts/kiosk.py).
Tests, the README and a kiosk's integration use this; a real reader signs the same canonical form."""
from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(reading: dict) -> bytes:
    """The bytes signed: the reading as JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(reading, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_of(text: str) -> Ed25519PublicKey:
    """A registered key: the raw 32 bytes, base64url (ValueError when it is not one)."""
    raw = unb64(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


class CardReader:
    def __init__(self, device_id: str, key: Ed25519PrivateKey | None = None) -> None:
        self.device_id, self.key = device_id, key or Ed25519PrivateKey.generate()

    @property
    def public_key(self) -> str:
        return b64(self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def read(self, *, card_number: str, name: str, chip_serial: str, at: datetime, valid_until: str = "2036-01-01",
             nonce: str | None = None) -> dict:
        """A signed reading, as the kiosk sends it to `POST /auth/v1/kiosk/sessions`."""
        reading = {"device_id": self.device_id, "card_number": card_number, "name": name, "chip_serial": chip_serial,
                   "valid_until": valid_until, "read_at": at.isoformat(), "nonce": nonce or secrets.token_hex(16)}
        return {"reading": reading, "signature": b64(self.key.sign(canonical(reading)))}
