"""The one interface every object store has: put as a stream with a size limit, get as a stream, delete, exists.

Objects are named by an id the platform made (`common.ids.new_id()`, with an optional `-suffix` such as `-thumb`),
never by a client's file name: an id is checked against `OBJECT_ID` before any store sees it, so `../`, slashes
and the like can never reach a path or a key. Every put returns the object's size and SHA-256 (of the bytes
stored), which the caller keeps; a get handed that checksum verifies it as it streams.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

OBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
CHUNK = 64 * 1024


class StorageError(Exception):
    """Base of the stores' errors."""


class StoreUnavailable(StorageError):
    """The store cannot be reached or answered with an error of its own (a 503 for the caller)."""


class ObjectTooLarge(StorageError):
    """The stream went past the put's limit; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"object larger than {limit} bytes")
        self.limit = limit


class ObjectMissing(StorageError):
    """No object by that id."""


class ObjectCorrupt(StorageError):
    """The bytes read back do not match the checksum recorded at put."""


@dataclass(frozen=True)
class StoredObject:
    id: str
    size: int
    sha256: str


def check_id(object_id: str) -> str:
    if not isinstance(object_id, str) or not OBJECT_ID.fullmatch(object_id):
        raise ValueError(f"not an object id: {object_id!r}")
    return object_id


class ObjectStore(Protocol):
    name: str

    async def put(self, object_id: str, chunks: AsyncIterable[bytes], *, limit: int,
                  content_type: str = "application/octet-stream") -> StoredObject: ...

    def get(self, object_id: str, *, sha256: str | None = None) -> AsyncIterator[bytes]: ...

    async def delete(self, object_id: str) -> None: ...

    async def exists(self, object_id: str) -> bool: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


class Meter:
    """Counts and hashes a stream as it passes, refusing it once it crosses `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()

    def take(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.limit:
            raise ObjectTooLarge(self.limit)
        self._hash.update(chunk)
        return chunk

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


async def verified(chunks: AsyncIterator[bytes], sha256: str | None) -> AsyncIterator[bytes]:
    """`chunks` passed on; with a checksum, ObjectCorrupt at the end when the bytes do not match it."""
    h = hashlib.sha256() if sha256 else None
    async for chunk in chunks:
        if h is not None:
            h.update(chunk)
        yield chunk
    if h is not None and h.hexdigest() != sha256:
        raise ObjectCorrupt("checksum mismatch")


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


async def file_chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    """A file's bytes from its start, `CHUNK` at a time, each read in a worker thread (a spooled upload on disk)."""
    await asyncio.to_thread(fh.seek, 0)
    while chunk := await asyncio.to_thread(fh.read, CHUNK):
        yield chunk


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield data[i:i + CHUNK]
    if not data:
        return
