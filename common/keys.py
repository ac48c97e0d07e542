"""Asymmetric signing keys for the gateway's tokens, and the JWKS that services verify against.

Keys live as PEM files in a directory; the newest is the active signing key, older ones stay published in the
JWKS until removed, so tokens signed before a rotation still verify.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHM = "RS256"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64u(n: int) -> str:
    return _b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> "SigningKey":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid=_thumbprint(key.public_key()), private_key=key)

    @classmethod
    def from_pem(cls, pem: bytes) -> "SigningKey":
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("only RSA signing keys are supported")
        return cls(kid=_thumbprint(key.public_key()), private_key=key)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())

    def public_jwk(self) -> dict:
        numbers = self.private_key.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": ALGORITHM,
                "n": _int_b64u(numbers.n), "e": _int_b64u(numbers.e)}


def _thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint, so the kid is derived from the key itself."""
    numbers = public_key.public_numbers()
    canonical = json.dumps({"e": _int_b64u(numbers.e), "kty": "RSA", "n": _int_b64u(numbers.n)},
                           separators=(",", ":"), sort_keys=True)
    return _b64u(hashlib.sha256(canonical.encode()).digest())[:16]


def load_signing_keys(directory: Path, *, create: bool = True) -> list[SigningKey]:
    """All keys in `directory`, oldest first; the last one signs. Creates one if there are none."""
    directory.mkdir(parents=True, exist_ok=True)
    files = sorted(directory.glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        if not create:
            raise FileNotFoundError(f"no signing key in {directory}")
        return [write_new_key(directory)]
    return [SigningKey.from_pem(p.read_bytes()) for p in files]


def write_new_key(directory: Path) -> SigningKey:
    key = SigningKey.generate()
    path = directory / f"{key.kid}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.to_pem())
    return key


def jwks_document(keys: list[SigningKey]) -> dict:
    return {"keys": [k.public_jwk() for k in keys]}
