"""Object storage behind one interface (`ObjectStore`): the local filesystem (default) or an S3-compatible
bucket, chosen by settings (`store_from_settings`); `encryption` wraps a stream in AES-256-GCM under a data key
that the field keys (`common.crypto`) wrap, so rotating the field keys re-wraps keys, never re-writes objects."""
from __future__ import annotations

from pathlib import Path

from common.storage.base import (CHUNK, ObjectCorrupt, ObjectMissing, ObjectStore, ObjectTooLarge, StorageError,
                                 StoredObject, StoreUnavailable, check_id, file_chunks, one_chunk, read_all)
from common.storage.local import LocalStore

__all__ = ["CHUNK", "LocalStore", "ObjectCorrupt", "ObjectMissing", "ObjectStore", "ObjectTooLarge", "StorageError",
           "StoredObject", "StoreUnavailable", "check_id", "file_chunks", "one_chunk", "read_all", "store_from_settings"]


def store_from_settings(settings) -> ObjectStore:
    """`storage_backend` "local" (files under `storage_dir`) or "s3" (`s3_bucket` at `s3_endpoint_url`)."""
    if settings.storage_backend == "s3":
        from common.storage.s3 import S3Store

        secret = settings.s3_secret_access_key
        return S3Store(bucket=settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                       access_key_id=settings.s3_access_key_id,
                       secret_access_key=secret.get_secret_value() if secret is not None else None,
                       prefix=settings.s3_prefix, timeout=settings.storage_timeout_seconds)
    return LocalStore(Path(settings.storage_dir))
