"""Objects encrypted at rest (materials: ID card scans, certificates), streamed.

Each object has a data key of its own (32 random bytes). The object is cut into 64 KiB segments, each sealed with
AES-256-GCM under that key: nonce = the segment's number, associated data = the object id, the number and whether
it is the last segment, so segments cannot be reordered, moved to another object, dropped or cut off at the end
without the read failing. The data key is stored beside the object's row, wrapped by the field keys
(`common.crypto.FieldCipher`: key id, AES-GCM): rotating the field keys re-wraps data keys (`rewrap`), a few
bytes each, and never re-writes an object.
"""
from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterable, AsyncIterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.crypto import DecryptionError, FieldCipher

SEGMENT = 64 * 1024
TAG = 16


def new_data_key() -> bytes:
    return os.urandom(32)


def _aad(object_id: str) -> str:
    return f"object:{object_id}"


def wrap_key(cipher: FieldCipher, key: bytes, object_id: str) -> str:
    return cipher.encrypt(base64.b64encode(key).decode(), aad=_aad(object_id))


def unwrap_key(cipher: FieldCipher, wrapped: str, object_id: str) -> bytes:
    return base64.b64decode(cipher.decrypt(wrapped, aad=_aad(object_id)))


def rewrap(cipher: FieldCipher, wrapped: str, object_id: str) -> str:
    """The data key wrapped by the active field key (after a rotation)."""
    return cipher.rotate(wrapped, aad=_aad(object_id))


def _seal_aad(object_id: str, n: int, last: bool) -> bytes:
    return f"{object_id}\x1f{n}\x1f{int(last)}".encode()


def _nonce(n: int) -> bytes:
    return n.to_bytes(12, "big")


async def _segments(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """The stream re-cut into `size`-byte pieces, each with whether it is the last (one empty piece for nothing)."""
    buf = bytearray()
    ready: bytes | None = None
    async for chunk in chunks:
        buf += chunk
        while len(buf) > size:  # more than one piece: the first is not the last
            if ready is not None:
                yield ready, False
            ready, buf = bytes(buf[:size]), buf[size:]
    if ready is not None:
        if buf:
            yield ready, False
            yield bytes(buf), True
        else:
            yield ready, True
    else:
        yield bytes(buf), True


async def encrypt_stream(chunks: AsyncIterable[bytes], key: bytes, object_id: str) -> AsyncIterator[bytes]:
    aead = AESGCM(key)
    n = 0
    async for piece, last in _segments(chunks, SEGMENT):
        yield aead.encrypt(_nonce(n), piece, _seal_aad(object_id, n, last))
        n += 1


async def decrypt_stream(chunks: AsyncIterable[bytes], key: bytes, object_id: str) -> AsyncIterator[bytes]:
    aead = AESGCM(key)
    n = 0
    async for frame, last in _segments(chunks, SEGMENT + TAG):
        try:
            yield aead.decrypt(_nonce(n), frame, _seal_aad(object_id, n, last))
        except InvalidTag:
            raise DecryptionError("tampered, truncated or misplaced object") from None
        n += 1


def sealed_size(size: int) -> int:
    """The stored size of `size` plaintext bytes."""
    return size + TAG * max(1, -(-size // SEGMENT))
