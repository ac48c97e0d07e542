"""The README tour's photo (issue 27) on the real platform (`onenet up`'s processes on loopback, through the
gateway over HTTP): the resident attaches a photo of the leak to the tour's request, staff list the request's
files and read the photo through the gateway, re-encoded without EXIF; and Open311's multipart POST with its
`media` photo and the api_key as a form field, as a GeoReport v2 client sends it."""
from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.e2e.harness import Platform

pytestmark = pytest.mark.e2e

TOUR_REQUEST = {"item_code": "SH-WX-001", "channel": "app", "description": "厨房水龙头漏水",
                "attributes": {"appliance": "plumbing"}, "location": {"grid": "110105001001001"}}


def photo_with_exif() -> bytes:
    img = Image.new("RGB", (640, 480), (70, 110, 160))
    exif = img.getexif()
    exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


@pytest.fixture(scope="module")
def p(tmp_path_factory):
    platform = Platform(tmp_path_factory.mktemp("tour-photo")).start()
    try:
        yield platform
    finally:
        platform.stop()


def test_the_tour_attaches_a_photo_to_its_request(p):
    resident, staff = p.token("resident1"), p.token("staff1")
    with httpx.Client(base_url=p.gw, timeout=60) as c:
        r = c.post("/services/v1/requests", json=TOUR_REQUEST, headers=resident)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert c.post(f"/services/v1/requests/{rid}/transitions", json={"action": "accept", "version": 1},
                      headers=staff).status_code == 200
        r = c.post(f"/services/v1/requests/{rid}/photos", headers=resident,
                   files={"file": ("onenet-tour-leak.jpg", photo_with_exif(), "image/jpeg")}, data={"note": "漏水处"})
        assert r.status_code == 201, r.text
        listed = c.get(f"/services/v1/requests/{rid}/attachments", headers=staff).json()
        assert [(a["kind"], a["stage"], a["note"]) for a in listed] == [("photo", "accepted", "漏水处")]
        url, thumb = listed[0]["url"], listed[0]["thumbnail_url"]
        assert url.startswith(p.gw) and thumb
        got = c.get(url, headers=staff)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        assert b"PhoneMaker" not in got.content and Image.open(io.BytesIO(got.content)).size == (640, 480)
        assert max(Image.open(io.BytesIO(c.get(thumb, headers=staff).content)).size) == 320

        # GeoReport v2: a multipart POST with the api_key and the `media` photo as form fields
        key = resident["Authorization"].removeprefix("Bearer ")
        r = c.post("/open311/v2/requests.json", data={
            "api_key": key, "service_code": "SH-WX-001", "address_id": "110105001001001",
            "description": "卫生间水管漏水", "attribute[appliance]": "plumbing"},
            files={"media": ("leak.jpg", photo_with_exif(), "image/jpeg")})
        assert r.status_code == 201, r.text
        rid2 = r.json()[0]["service_request_id"]
        listed = c.get(f"/services/v1/requests/{rid2}/attachments", headers=resident).json()
        assert [(a["kind"], a["stage"]) for a in listed] == [("photo", "submitted")]
        r = c.post("/open311/v2/requests.xml", data={
            "api_key": key, "service_code": "SH-WX-001", "address_id": "110105001001001"},
            files={"media": ("leak.jpg", b"MZ\x90\x00 not an image", "image/jpeg")})
        assert r.status_code == 415 and r.text.startswith("<?xml") and "media:" in r.text
