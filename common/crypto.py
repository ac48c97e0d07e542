"""Field-level protection of sensitive personal data: AES-256-GCM with key ids (so keys rotate), a keyed
blind index (HMAC-SHA256) for exact-match lookup without decrypting, and output masking."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_VERSION = "v1"


class DecryptionError(Exception):
    """Unknown key id, tampered or malformed ciphertext, or the wrong associated data."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _decode_key(text: str) -> bytes:
    """Keys are base64, standard or URL-safe alphabet, padded or not."""
    t = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(t + "=" * (-len(t) % 4))


def generate_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_keyring(spec: str) -> dict[str, bytes]:
    """`"k1:<base64 32 bytes>,k2:<base64>"` → {key id: key}."""
    ring: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kid, _, b64 = part.partition(":")
        key = _decode_key(b64)
        if not kid or "." in kid or len(key) != 32:
            raise ValueError(f"bad key entry {kid!r}: need id:base64(32 bytes)")
        ring[kid] = key
    if not ring:
        raise ValueError("empty keyring")
    return ring


class FieldCipher:
    def __init__(self, keyring: dict[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keyring:
            raise ValueError(f"active key {active_key_id!r} is not in the keyring")
        self._aead = {kid: AESGCM(key) for kid, key in keyring.items()}
        self.active_key_id = active_key_id

    def encrypt(self, plaintext: str, *, aad: str = "") -> str:
        nonce = os.urandom(12)
        ct = self._aead[self.active_key_id].encrypt(nonce, plaintext.encode(), aad.encode())
        return f"{TOKEN_VERSION}.{self.active_key_id}.{_b64e(nonce + ct)}"

    def decrypt(self, token: str, *, aad: str = "") -> str:
        try:
            version, kid, body = token.split(".", 2)
            raw = _b64d(body)
        except (ValueError, AttributeError):
            raise DecryptionError("malformed token") from None
        if version != TOKEN_VERSION or len(raw) < 12 + 16:
            raise DecryptionError("malformed token")
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptionError(f"unknown key id {kid!r}")
        try:
            return aead.decrypt(raw[:12], raw[12:], aad.encode()).decode()
        except InvalidTag:
            raise DecryptionError("tampered ciphertext or wrong associated data") from None

    @staticmethod
    def key_id(token: str) -> str:
        return token.split(".", 2)[1]

    def needs_rotation(self, token: str) -> bool:
        return self.key_id(token) != self.active_key_id

    def rotate(self, token: str, *, aad: str = "") -> str:
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)


class BlindIndex:
    """Deterministic keyed digest: equal values give equal digests, which reveal nothing without the key."""

    def __init__(self, key: bytes, key_id: str = "b1") -> None:
        self._key = key
        self.key_id = key_id

    def digest(self, value: str, *, domain: str) -> str:
        normalised = "".join(value.split()).upper()
        return hmac.new(self._key, f"{domain}\x1f{normalised}".encode(), hashlib.sha256).hexdigest()


@dataclass
class FieldProtection:
    cipher: FieldCipher
    blind_index: BlindIndex

    @classmethod
    def from_env_spec(cls, keyring_spec: str, active: str, blind_key: str) -> "FieldProtection":
        return cls(FieldCipher(load_keyring(keyring_spec), active), BlindIndex(_decode_key(blind_key)))

    @classmethod
    def from_file(cls, path: str | Path, *, create: bool = True) -> "FieldProtection":
        path = Path(path)
        if not path.exists():
            if not create:
                raise FileNotFoundError(path)
            write_keyring_file(path)
        doc = json.loads(path.read_text())
        ring = {kid: _decode_key(k) for kid, k in doc["keys"].items()}
        return cls(FieldCipher(ring, doc["active"]), BlindIndex(_decode_key(doc["blind_index_key"])))


def write_keyring_file(path: str | Path) -> None:
    """A new keyring file (mode 0600); never overwrites an existing one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"active": "k1", "keys": {"k1": generate_key()}, "blind_index_key": generate_key()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)


def keyring_from_file(path: str | Path) -> FieldProtection:
    return FieldProtection.from_file(path, create=False)


# ---- masking ----------------------------------------------------------------------------------------------------

def mask_generic(value: str, keep_start: int, keep_end: int) -> str:
    """Keep the ends, star the middle; a value too short to keep both ends is starred whole."""
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[len(value) - keep_end:]


def mask_id_number(value: str) -> str:
    return mask_generic(value, 6, 4)


def mask_phone(value: str) -> str:
    return mask_generic(value, 3, 4)


def mask_name(value: str) -> str:
    if len(value) <= 1:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 1)
