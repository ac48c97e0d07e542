"""The gateway as identity provider: verify credentials, sign short-lived RS256 tokens."""
from __future__ import annotations

import uuid
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from common.clock import Clock
from common.keys import SigningKey, jwks_document

_hasher = PasswordHasher()
# A hash to verify against when the account does not exist, so timing does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("onenet-dummy-secret")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class TokenIssuer:
    def __init__(self, keys: list[SigningKey], *, issuer: str, audience: str, ttl_seconds: int,
                 clock: Clock | None = None) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl_seconds
        self.clock = clock or Clock()  # token lifetimes are real time (common/clock.py)

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    def jwks(self) -> dict:
        return jwks_document(self.keys)

    def issue(self, *, subject: str, member: str, role: str, scopes: list[str], acting_for: str | None = None,
              name: str | None = None, ttl: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """`ttl` overrides the lifetime (a session's access tokens); `extra` adds claims (a session's `sid`, `amr`)."""
        now = int(self.clock.timestamp())
        ttl = ttl or self.ttl
        claims: dict[str, Any] = {
            **(extra or {}),
            "iss": self.issuer, "aud": self.audience, "sub": subject, "member": member, "role": role,
            "scopes": scopes, "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
        }
        if acting_for:
            claims["acting_for"] = acting_for
        if name:
            claims["name"] = name
        token = jwt.encode(claims, self.active.private_key, algorithm="RS256", headers={"kid": self.active.kid})
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "role": role,
                "member": member, "scope": " ".join(scopes)}
