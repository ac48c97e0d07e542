"""Shared by the attachment tests: an svc_services app on either object store (files under a temporary directory,
or a bucket on moto's S3 server on loopback), and files made on the fly (photos with GPS in their EXIF, PDFs with
and without JavaScript, bombs)."""
from __future__ import annotations

import io
import struct
import zlib

import httpx
import pytest
from PIL import Image

from common.http_client import ServiceClient
from tests.s3server import S3_CREDENTIALS


@pytest.fixture(params=["local", "s3"])
def store_settings(request, tmp_path):
    if request.param == "local":
        return {"storage_backend": "local", "storage_dir": tmp_path / "objects"}
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return {"storage_backend": "s3", "s3_endpoint_url": endpoint, "s3_bucket": bucket, **S3_CREDENTIALS}


@pytest.fixture
async def files_client(service_client, clock, upstreams, store_settings, auth):
    from tests.svc_services.conftest import GRID1, GRID2, MEAL, OPS, OTHER_GRID, REPAIR

    c = await service_client("svc_services", gateway_url="https://onenet.example.gov.cn", **store_settings)
    c.app.state.clock = clock
    for name, attr in (("matching", "matching_client"), ("exchange", "exchange_client")):
        await getattr(c.app.state, attr).aclose()
        transport = httpx.MockTransport(lambda request, name=name: upstreams[name](request))
        setattr(c.app.state, attr, ServiceClient(name, "http://gw", transport=transport, retries=0, backoff=0))
    for code, name, lat, lon in ((GRID1, "幸福一网格", 39.9210, 116.4430), (GRID2, "幸福二网格", 39.9230, 116.4460),
                                 (OTHER_GRID, "安康一网格", 39.9180, 116.4510)):
        assert (await c.put(f"/services/v1/grids/{code}", json={"name": name, "lat": lat, "long": lon},
                            headers=auth(**OPS))).status_code == 200
    id_card = {"code": "id_card_copy", "name": "身份证复印件", "source": "upload"}
    for item in (REPAIR, {**MEAL, "materials": [*MEAL["materials"], id_card]}):
        r = await c.post("/services/v1/catalogue/items", json=item, headers=auth(**OPS))
        assert r.status_code == 201, r.text
    return c


def jpeg_with_gps(size=(640, 480), colour=(200, 30, 30)) -> bytes:
    img = Image.new("RGB", size, colour)
    exif = img.getexif()
    exif[0x010F] = "PhoneMaker"          # Make
    exif[0x0112] = 1                     # Orientation
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (39.0, 55.0, 12.0), "E", (116.0, 26.0, 30.0)
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def png(size=(300, 200), mode="RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 120, 200, 128) if mode == "RGBA" else (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int = 9000) -> bytes:
    """A real PNG of side × side grey pixels (81 MP at 9000), all zeros: about 80 KB that decode to 81 MB."""
    z = zlib.compressobj(9)
    row = bytes(side + 1)
    parts = [z.compress(row) for _ in range(side)] + [z.flush()]
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def pdf(extra_objects: list[bytes] = (), *, catalog_extra: bytes = b"") -> bytes:
    objs = [b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b">>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>", *extra_objects]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def flate_stream(payload: bytes) -> bytes:
    data = zlib.compress(payload)
    return f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"


def flate_bomb(size: int = 40 * 1024 * 1024) -> bytes:
    z = zlib.compressobj(9)
    block = bytes(1024 * 1024)
    data = b"".join([z.compress(block) for _ in range(size // len(block))] + [z.flush()])
    return f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
