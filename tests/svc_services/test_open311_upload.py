"""Open311 POST with GeoReport's `media` file (issue 27), on both databases and both object stores: a multipart
POST stores its photo the way a request photo is stored (type from content, size, re-encoded without EXIF/GPS,
a thumbnail), and GET names it in `media_url` by a real URL once the matter is public. Bad input is answered in
Open311's error format, and nothing is half-written: no request without its photo, no photo without its request."""
from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from PIL import Image
from sqlalchemy import func, select

from svc_services.attachments.models import Attachment
from svc_services.requests.models import ServiceRequest
from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import GRID1, OPS, STAFF
from tests.svc_services.files import files_client, jpeg_with_gps, store_settings  # noqa: F401
from tests.svc_services.test_attachments import stored
from tests.svc_services.test_open311 import STREETLIGHT

BASE = "/open311/v2"
FIELDS = {"service_code": "WG-SJ-001", "address_id": GRID1, "description": "路灯不亮"}


@pytest.fixture
async def c(files_client, auth):  # noqa: F811 - the fixture, imported above
    r = await files_client.post("/services/v1/catalogue/items", json=STREETLIGHT, headers=auth(**OPS))
    assert r.status_code == 201, r.text
    return files_client


@pytest.fixture
def key(make_token):
    return make_token("system", member="sys-street", user="sys-street")


async def post(c, key, media=None, fmt="json", name="lamp.jpg", ctype="image/jpeg", **fields):
    data = {**FIELDS, "api_key": key, **fields}
    files = {"media": (name, media, ctype)} if media is not None else None
    return await c.post(f"{BASE}/requests.{fmt}", data={k: v for k, v in data.items() if v is not None},
                        files=files)


async def requests_count(c) -> int:
    async with c.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(ServiceRequest))).scalar_one()


def errors_of(r, fmt="json"):
    if fmt == "xml":
        root = ET.fromstring(r.content)
        return [{"code": int(e.findtext("code")), "description": e.findtext("description")} for e in root]
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_media_is_stored_as_the_requests_photo_and_named_by_media_url(c, auth, key, fmt):
    r = await post(c, key, jpeg_with_gps(), fmt=fmt)
    assert r.status_code == 201, r.text
    rid = (r.json()[0] if fmt == "json" else {e.tag: e.text for e in ET.fromstring(r.content)[0]})["service_request_id"]
    listed = (await c.get(f"/services/v1/requests/{rid}/attachments", headers=auth(**STAFF))).json()
    assert len(listed) == 1 and listed[0]["kind"] == "photo" and listed[0]["media_type"] == "image/jpeg"
    assert (listed[0]["width"], listed[0]["height"]) == (640, 480) and listed[0]["stage"] == "submitted"
    assert await stored(c) == (1, 2)                                   # the photo and its thumbnail
    assert (await c.get(f"{BASE}/requests/{rid}.json")).json()[0]["media_url"] is None  # not public yet
    r = await c.put(f"/services/v1/requests/{rid}/publication", json={"description": "路灯不亮"}, headers=auth(**STAFF))
    assert r.status_code == 200, r.text
    url = (await c.get(f"{BASE}/requests/{rid}.json")).json()[0]["media_url"]
    assert urlsplit(url).path == f"{BASE}/media/{listed[0]['id']}.jpg"
    got = await c.get(f"{urlsplit(url).path}?{urlsplit(url).query}")     # public, no token
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert b"PhoneMaker" not in got.content and not Image.open(io.BytesIO(got.content)).getexif()
    # media and media_url together: the stored photo is the one named
    r = await post(c, key, jpeg_with_gps(colour=(0, 90, 0)), media_url="https://example.org/x.jpg")
    assert r.status_code == 201, r.text


async def test_the_form_without_media_still_works_and_the_limit_for_plain_bodies_holds(c, key):
    r = await post(c, key)
    assert r.status_code == 201, r.text
    assert await stored(c) == (0, 0)
    r = await c.post(f"{BASE}/requests.json", content=b"description=" + b"x" * (1024 * 1024 + 10),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and errors_of(r)[0]["code"] == 413


async def test_bad_media_is_refused_in_open311_format_with_nothing_written(c, key):
    before = await requests_count(c)
    exe = b"MZ\x90\x00" + os.urandom(4000)
    cases = [
        (dict(media=exe, name="photo.jpg"), 415, "media: "),                        # an executable named .jpg
        (dict(media=b"%PDF-1.7\n%%EOF\n", name="a.jpg"), 415, "media: "),           # a PDF is no photo
        (dict(media=jpeg_with_gps()[:600], name="cut.jpg"), 400, "media: "),        # a corrupt image
        (dict(media=jpeg_with_gps(), name="../../etc/passwd.jpg"), 400, "media: "),
        (dict(media=b"\xff\xd8\xff" + bytes(11 * 1024 * 1024), name="big.jpg"), 413, "media: "),  # > 10 MiB
        (dict(media=b"", name="empty.jpg"), 400, "media: "),
        (dict(media=jpeg_with_gps(), fmt="xml", name="a/b.jpg"), 400, "media: "),
    ]
    for kw, status, prefix in cases:
        r = await post(c, key, **kw)
        assert r.status_code == status, (kw["name"], r.text)
        errs = errors_of(r, kw.get("fmt", "json"))
        assert errs[0]["code"] == status and errs[0]["description"].startswith(prefix), errs
    # a file under another field name, two files, a broken multipart body
    r = await c.post(f"{BASE}/requests.json", data={**FIELDS, "api_key": key},
                     files={"photo": ("a.jpg", jpeg_with_gps(), "image/jpeg")})
    assert r.status_code == 400 and "media" in errors_of(r)[0]["description"]
    r = await c.post(f"{BASE}/requests.json", data={**FIELDS, "api_key": key},
                     files=[("media", ("a.jpg", jpeg_with_gps(), "image/jpeg")),
                            ("media", ("b.jpg", jpeg_with_gps(), "image/jpeg"))])
    assert r.status_code == 400 and errors_of(r)[0]["code"] == 400
    r = await c.post(f"{BASE}/requests.json", content=b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n",
                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code in (400, 401) and errors_of(r)[0]["code"] in (400, 401)
    # a good photo with a submission the intake refuses (an unknown grid): the stored photo is deleted
    r = await post(c, key, jpeg_with_gps(), address_id="110105009009009")
    assert r.status_code == 400 and errors_of(r)[0]["description"].startswith("address_id"), r.text
    # and one without a key: refused before anything is examined
    r = await post(c, None, jpeg_with_gps())
    assert r.status_code == 401
    assert await requests_count(c) == before and await stored(c) == (0, 0)


async def test_store_down_creates_no_request(c, key, store_down):
    before = await requests_count(c)
    store_down.down(c.app)
    r = await post(c, key, jpeg_with_gps())
    assert r.status_code == 503 and errors_of(r)[0]["code"] == 503
    await store_down.up(c.app)
    assert await requests_count(c) == before and await stored(c) == (0, 0)
    # a link that fails after the request was refused nothing: the same body, the store back, goes through
    r = await post(c, key, jpeg_with_gps())
    assert r.status_code == 201, r.text
    async with c.app.state.db.session() as s:
        rows = (await s.execute(select(Attachment.request_id))).scalars().all()
    assert rows == [r.json()[0]["service_request_id"]]
