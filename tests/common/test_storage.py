"""The object stores behind one interface, each against the real thing: files under a temporary directory, and
moto's S3 server on loopback (a child process). Put streams with a limit and a checksum, get streams and verifies,
delete, exists; ids that are not ids, an oversized stream leaving nothing, a store that is down."""
from __future__ import annotations

import hashlib
import os

import pytest

from common.crypto import FieldCipher, DecryptionError
from common.ids import new_id
from common.storage import (LocalStore, ObjectCorrupt, ObjectMissing, ObjectTooLarge, StoreUnavailable, one_chunk,
                            read_all)
from common.storage.encryption import (decrypt_stream, encrypt_stream, new_data_key, rewrap, sealed_size,
                                       unwrap_key, wrap_key)
from common.storage.s3 import S3Store
from tests.s3server import free_port, s3_bucket, s3_endpoint  # noqa: F401


@pytest.fixture(params=["local", "s3"])
async def store(request, tmp_path):
    if request.param == "local":
        s = LocalStore(tmp_path / "objects")
    else:
        endpoint, bucket = request.getfixturevalue("s3_bucket")
        s = S3Store(bucket=bucket, endpoint_url=endpoint, access_key_id="test", secret_access_key="test")
    yield s
    await s.aclose()


async def _pieces(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("size", [0, 1, 70_000, 9 * 1024 * 1024 + 5])  # empty, tiny, a few chunks, multipart
async def test_put_get_delete_round_trip(store, size):
    data = os.urandom(size)
    oid = new_id()
    assert not await store.exists(oid)
    got = await store.put(oid, _pieces(data, 100_003), limit=10 * 1024 * 1024)
    assert got.size == size and got.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.exists(oid)
    assert await read_all(store.get(oid, sha256=got.sha256)) == data
    await store.delete(oid)
    assert not await store.exists(oid)
    with pytest.raises(ObjectMissing):
        await read_all(store.get(oid))
    await store.delete(oid)  # deleting what is gone is fine


async def test_oversized_stream_leaves_nothing(store):
    oid = new_id()
    with pytest.raises(ObjectTooLarge):
        await store.put(oid, _pieces(os.urandom(9 * 1024 * 1024), 65536), limit=9 * 1024 * 1024 - 1)
    assert not await store.exists(oid)
    with pytest.raises(ObjectTooLarge):
        await store.put(oid, one_chunk(b"x" * 11), limit=10)
    assert not await store.exists(oid)


async def test_checksum_is_verified_on_read(store):
    oid = new_id()
    await store.put(oid, one_chunk(b"hello"), limit=100)
    with pytest.raises(ObjectCorrupt):
        await read_all(store.get(oid, sha256=hashlib.sha256(b"other").hexdigest()))


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", ".hidden", "x" * 101, "名字"])
async def test_ids_that_are_not_ids_never_reach_the_store(store, bad):
    with pytest.raises(ValueError):
        await store.put(bad, one_chunk(b"x"), limit=10)
    with pytest.raises(ValueError):
        await store.exists(bad)


async def test_local_files_are_private_and_not_named_by_clients(tmp_path):
    s = LocalStore(tmp_path / "o")
    oid = new_id()
    await s.put(oid, one_chunk(b"abc"), limit=10)
    [path] = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert path.name == oid and (path.stat().st_mode & 0o777) == 0o600


async def test_s3_down_is_store_unavailable():
    s = S3Store(bucket="b", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="t",
                secret_access_key="t", timeout=1.0)
    with pytest.raises(StoreUnavailable):
        await s.put(new_id(), one_chunk(b"x"), limit=10)
    with pytest.raises(StoreUnavailable):
        await s.exists(new_id())
    with pytest.raises(StoreUnavailable):
        await s.ping()


async def test_s3_unknown_bucket_is_unavailable(s3_endpoint):  # noqa: F811
    s = S3Store(bucket="no-such-bucket", endpoint_url=s3_endpoint, access_key_id="t", secret_access_key="t")
    with pytest.raises(StoreUnavailable):
        await s.put(new_id(), one_chunk(b"x"), limit=10)


@pytest.mark.parametrize("size", [0, 5, 64 * 1024, 64 * 1024 + 1, 200_000])
async def test_encrypted_stream_round_trip_and_rotation(store, size):
    old = FieldCipher({"k1": os.urandom(32)}, "k1")
    data = os.urandom(size)
    oid = new_id()
    key = new_data_key()
    wrapped = wrap_key(old, key, oid)
    got = await store.put(oid, encrypt_stream(_pieces(data, 7_000), key, oid), limit=1 << 20)
    assert got.size == sealed_size(size)
    stored = await read_all(store.get(oid))
    assert size < 64 or data[:64] not in stored
    back = await read_all(decrypt_stream(store.get(oid, sha256=got.sha256), unwrap_key(old, wrapped, oid), oid))
    assert back == data


async def test_encryption_detects_tampering_truncation_and_moving():
    data = os.urandom(150_000)
    key = new_data_key()
    sealed = await read_all(encrypt_stream(one_chunk(data), key, "a1"))
    assert await read_all(decrypt_stream(one_chunk(sealed), key, "a1")) == data
    for bad, oid in ((sealed[:-1], "a1"), (sealed[: 64 * 1024 + 16], "a1"), (sealed, "a2"),
                     (sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:], "a1"), (b"", "a1")):
        with pytest.raises(DecryptionError):
            await read_all(decrypt_stream(one_chunk(bad), key, oid))


def test_data_keys_rewrap_under_rotated_field_keys():
    k1, k2 = os.urandom(32), os.urandom(32)
    old = FieldCipher({"k1": k1}, "k1")
    key = new_data_key()
    wrapped = wrap_key(old, key, "obj1")
    new = FieldCipher({"k1": k1, "k2": k2}, "k2")
    assert unwrap_key(new, wrapped, "obj1") == key  # the old key still reads
    again = rewrap(new, wrapped, "obj1")
    assert FieldCipher.key_id(again) == "k2" and unwrap_key(FieldCipher({"k2": k2}, "k2"), again, "obj1") == key
    with pytest.raises(DecryptionError):
        unwrap_key(new, wrapped, "obj2")  # a wrapped key belongs to its object


async def test_s3_put_holds_one_part_whatever_the_object_size(s3_bucket):  # noqa: F811
    """A multipart put holds one part buffer (PART plus less than a chunk), sent as it is: the peak of Python's
    allocations during a 48 MiB put stays well under three parts (it was four: the part copied twice beside the
    buffer). Seen here: 11–16.2 MiB (the client's own buffers for the part in flight come and go beside it)."""
    import tracemalloc

    from common.storage import CHUNK
    from common.storage.s3 import PART

    endpoint, bucket = s3_bucket
    s = S3Store(bucket=bucket, endpoint_url=endpoint, access_key_id="test", secret_access_key="test")
    block = os.urandom(CHUNK)
    size = 6 * PART

    async def chunks():
        for _ in range(size // CHUNK):
            yield block

    tracemalloc.start()
    try:
        obj = await s.put(new_id(), chunks(), limit=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256()
    for _ in range(size // CHUNK):
        expected.update(block)
    assert obj.size == size and obj.sha256 == expected.hexdigest()
    got = hashlib.sha256()
    async for piece in s.get(obj.id, sha256=obj.sha256):
        got.update(piece)
    assert got.hexdigest() == obj.sha256
    assert PART < peak < 2.5 * PART, peak
    await s.aclose()
