"""Objects in an S3-compatible bucket (production: the cloud's object storage, MinIO, Ceph RGW), through boto3.

boto3's client is synchronous; each call runs in a worker thread (`asyncio.to_thread`), so the event loop never
waits on the network. A put streams: one part buffer is held at a time (8 MiB plus less than one incoming chunk,
sent as it is, never copied: a put's memory is about one part, whatever the object's size); a larger object goes up as a
multipart upload, aborted if the stream fails or crosses its limit, so a refused or broken upload leaves nothing
in the bucket. Timeouts are short and retries few: a store that is down is a 503 for the caller within seconds.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from common.storage.base import CHUNK, Meter, ObjectMissing, StoredObject, StoreUnavailable, check_id, verified

PART = 8 * 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Store:
    name = "s3"

    def __init__(self, *, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1",
                 access_key_id: str | None = None, secret_access_key: str | None = None, prefix: str = "",
                 timeout: float = 5.0) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(connect_timeout=min(2.0, timeout), read_timeout=timeout, signature_version="s3v4",
                          retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": "path"}))

    def _key(self, object_id: str) -> str:
        return self.prefix + check_id(object_id)

    async def _call(self, fn, /, **kw):
        try:
            return await asyncio.to_thread(fn, Bucket=self.bucket, **kw)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise ObjectMissing(kw.get("Key", "")) from None
            raise StoreUnavailable(f"s3: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"s3: {exc}") from exc

    async def put(self, object_id: str, chunks: AsyncIterable[bytes], *, limit: int,
                  content_type: str = "application/octet-stream") -> StoredObject:
        key = self._key(object_id)
        meter = Meter(limit)
        buf = bytearray()
        upload_id: str | None = None
        parts: list[dict] = []
        try:
            async for chunk in chunks:
                buf += meter.take(chunk)
                if len(buf) >= PART:  # the buffer goes up as the part itself (PART plus < one chunk), no copy
                    if upload_id is None:
                        upload_id = (await self._call(self.client.create_multipart_upload, Key=key,
                                                      ContentType=content_type))["UploadId"]
                    resp = await self._call(self.client.upload_part, Key=key, UploadId=upload_id,
                                            PartNumber=len(parts) + 1, Body=buf)
                    parts.append({"ETag": resp["ETag"], "PartNumber": len(parts) + 1})
                    buf = bytearray()
            if upload_id is None:
                await self._call(self.client.put_object, Key=key, Body=buf, ContentType=content_type,
                                 Metadata={"sha256": meter.sha256})
            else:
                if buf:
                    resp = await self._call(self.client.upload_part, Key=key, UploadId=upload_id,
                                            PartNumber=len(parts) + 1, Body=buf)
                    parts.append({"ETag": resp["ETag"], "PartNumber": len(parts) + 1})
                await self._call(self.client.complete_multipart_upload, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                try:
                    await self._call(self.client.abort_multipart_upload, Key=key, UploadId=upload_id)
                except StoreUnavailable:
                    pass  # the bucket's lifecycle rule for incomplete uploads removes the parts
            raise
        return StoredObject(object_id, meter.size, meter.sha256)

    def get(self, object_id: str, *, sha256: str | None = None) -> AsyncIterator[bytes]:
        return verified(self._read(self._key(object_id)), sha256)

    async def _read(self, key: str) -> AsyncIterator[bytes]:
        body = (await self._call(self.client.get_object, Key=key))["Body"]
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(body.read, CHUNK)
                except (BotoCoreError, OSError) as exc:
                    raise StoreUnavailable(f"s3: {exc}") from exc
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def delete(self, object_id: str) -> None:
        await self._call(self.client.delete_object, Key=self._key(object_id))

    async def exists(self, object_id: str) -> bool:
        try:
            await self._call(self.client.head_object, Key=self._key(object_id))
        except ObjectMissing:
            return False
        return True

    async def ping(self) -> None:
        await self._call(self.client.head_bucket)

    async def create_bucket(self) -> None:
        await self._call(self.client.create_bucket)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.client.close)
