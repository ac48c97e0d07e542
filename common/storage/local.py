"""Objects as files under one directory (the default: `var/objects/<service>` for `make run`).

A put writes to a temporary file in the same directory, fsyncs it and renames it into place, so a reader sees a
whole object or none, and an interrupted put leaves nothing under the object's name. Files are spread over two
levels of sub-directories by the id's last characters (UUIDv7 ids start with the time) and made 0600.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from common.storage.base import CHUNK, Meter, ObjectMissing, StoredObject, StoreUnavailable, check_id, verified


class LocalStore:
    name = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, object_id: str) -> Path:
        oid = check_id(object_id)
        return self.root / oid[-2:] / oid[-4:-2] / oid

    async def put(self, object_id: str, chunks: AsyncIterable[bytes], *, limit: int,
                  content_type: str = "application/octet-stream") -> StoredObject:
        path = self._path(object_id)
        tmp = self.root / ".tmp" / f"{object_id}.{os.getpid()}.{id(chunks):x}"
        try:
            await asyncio.to_thread(_mkdirs, tmp.parent, path.parent)
            fd = await asyncio.to_thread(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"local store: {exc}") from exc
        meter = Meter(limit)
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    if chunk:
                        await asyncio.to_thread(fh.write, meter.take(chunk))
                await asyncio.to_thread(_sync, fh)
            await asyncio.to_thread(os.replace, tmp, path)
        except OSError as exc:
            _unlink(tmp)
            raise StoreUnavailable(f"local store: {exc}") from exc
        except BaseException:
            _unlink(tmp)
            raise
        return StoredObject(object_id, meter.size, meter.sha256)

    def get(self, object_id: str, *, sha256: str | None = None) -> AsyncIterator[bytes]:
        return verified(self._read(self._path(object_id)), sha256)

    async def _read(self, path: Path) -> AsyncIterator[bytes]:
        try:
            fh = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise ObjectMissing(path.name) from None
        except OSError as exc:
            raise StoreUnavailable(f"local store: {exc}") from exc
        try:
            while chunk := await asyncio.to_thread(fh.read, CHUNK):
                yield chunk
        finally:
            fh.close()

    async def delete(self, object_id: str) -> None:
        path = self._path(object_id)
        try:
            await asyncio.to_thread(path.unlink, True)
        except OSError as exc:
            raise StoreUnavailable(f"local store: {exc}") from exc

    async def exists(self, object_id: str) -> bool:
        return await asyncio.to_thread(self._path(object_id).is_file)

    async def ping(self) -> None:
        try:
            await asyncio.to_thread(_mkdirs, self.root)
        except OSError as exc:
            raise StoreUnavailable(f"local store: {exc}") from exc

    async def aclose(self) -> None:
        return None


def _mkdirs(*dirs: Path) -> None:
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)


def _sync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
