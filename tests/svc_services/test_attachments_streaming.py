"""Uploads are read as files, in pieces, never whole (issue 27): the size is measured without reading past the
limit + 1 byte; the PDF scan reads 64 KiB pieces and still finds an active name cut by a piece's edge, in the raw
bytes and in inflated text, without misreading a cut name ("/JS" of "/JSRef"); a large material (past the S3
store's 8 MiB part, so a multipart upload) streams in and out on both stores, encrypted, byte for byte."""
from __future__ import annotations

import hashlib
import io
import os
import zlib

import pytest

from common.storage import LocalStore
from common.storage.uploads import KIND_LIMITS
from svc_services.attachments import content
from svc_services.attachments.content import PIECE, Refusal, examine
from svc_services.attachments.service import measure
from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import RES1, STAFF
from tests.svc_services.files import files_client, flate_bomb, jpeg_with_gps, pdf, store_settings  # noqa: F401
from tests.svc_services.test_attachments_materials import accepted_meal, put_material


class Endless(io.RawIOBase):
    """A file that never ends; counts what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, n: int = -1) -> bytes:
        assert n > 0, "read whole"
        self.read_bytes += n
        return b"\0" * n


def test_measure_stops_at_the_limit_plus_one_byte():
    fh = Endless()
    with pytest.raises(Exception) as refused:
        measure("photo", fh)
    assert refused.value.status == 413 and refused.value.code == "attachment.too_large"
    assert fh.read_bytes == KIND_LIMITS["photo"] + 1
    assert measure("material", io.BytesIO(b"%PDF-1.7 and so on")) == 18


def pdf_with_filler(before: int, name: bytes, *, flate: bool = False) -> bytes:
    """A PDF whose `name` starts `before` bytes into its body (raw) or into a Flate stream's text."""
    if flate:
        text = b"%" + b"x" * (before - 1) + name + b" 1 0 R"
        data = zlib.compress(text)
        obj = f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
        return pdf([obj])
    def made(filler: int) -> bytes:
        return pdf(catalog_extra=name + b" ").replace(b"%PDF-1.7\n", b"%PDF-1.7\n%" + b"x" * filler + b"\n", 1)

    return made(max(0, before - made(0).index(name)))


@pytest.mark.parametrize("flate", [False, True])
@pytest.mark.parametrize("shift", [-9, -5, -2, -1, 0, 1])
def test_an_active_name_cut_by_a_piece_edge_is_found(flate, shift):
    """Around every 64 KiB edge: /JavaScript (also spelt #4Aava#53cript) straddling it is refused."""
    for name in (b"/JavaScript", b"/#4Aava#53cript"):
        doc = pdf_with_filler(PIECE + shift, name, flate=flate)
        assert flate or doc.index(name) == PIECE + shift
        with pytest.raises(Refusal) as refused:
            examine("material", io.BytesIO(doc))
        assert refused.value.code == "attachment.active_content", (name, shift)


@pytest.mark.parametrize("flate", [False, True])
def test_a_name_cut_after_an_active_prefix_is_not_misread(flate):
    # "/JSRef" cut after "/JS" at a piece edge is still one harmless name
    for shift in (-3, -4):
        doc = pdf_with_filler(PIECE + shift, b"/JSRef", flate=flate)
        kept = examine("material", io.BytesIO(doc))
        assert kept.media_type == "application/pdf" and kept.size == len(doc) and kept.data is None


def test_a_bomb_is_refused_without_inflating_it_whole():
    doc = pdf([flate_bomb(64 * 1024 * 1024)])
    with pytest.raises(Refusal) as refused:
        examine("material", io.BytesIO(doc))
    assert refused.value.code == "attachment.decompression_bomb"


def test_a_photo_is_decoded_from_its_file():
    kept = examine("photo", io.BytesIO(jpeg_with_gps((1000, 700))))
    assert kept.data[:3] == b"\xff\xd8\xff" and kept.size == len(kept.data) and (kept.width, kept.height) == (1000, 700)
    assert max(content.Image.open(io.BytesIO(kept.thumbnail)).size) == 320


@pytest.fixture
def c(files_client):  # noqa: F811 - the fixture, imported above
    return files_client


async def test_a_large_material_streams_in_and_out_encrypted(c, auth, upstreams):
    rid, _ = await accepted_meal(c, auth, upstreams)
    body = os.urandom(9 * 1024 * 1024)   # past one S3 part (8 MiB): a multipart upload; the spool is on disk
    doc = pdf([b"% " + body.hex().encode()[:len(body)]])
    r = await put_material(c, auth, rid, doc)
    assert r.status_code == 201, r.text
    aid = r.json()["attachment_id"]
    store = c.app.state.store
    if isinstance(store, LocalStore):
        stored = store._path(aid).read_bytes()
        assert len(stored) > len(doc) and doc[:64] not in stored   # sealed segments, not the PDF
    got = await c.get(f"/services/v1/attachments/{aid}/content", headers=auth(**STAFF))
    assert got.status_code == 200 and int(got.headers["content-length"]) == len(doc)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(doc).digest()
    mine = await c.get(f"/services/v1/attachments/{aid}/content", headers=auth(**RES1))
    assert mine.status_code == 200 and mine.content == doc
