"""Request photos on both databases and both object stores: uploaded by multipart form, type from the content,
re-encoded without EXIF/GPS, a thumbnail, ≤ 9 a request (also on later steps), served per object; and the bad
input of issue 27, each a clear problem with nothing stored and nothing linked."""
from __future__ import annotations

import io
import os

import pytest

from PIL import Image
from sqlalchemy import func, select

from common.storage import LocalStore
from svc_services.attachments.models import Attachment
from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import (GRIDW, OPS, PROVIDER, RES1, RES3, STAFF, STAFF_OTHER, move, submit)
from tests.svc_services.files import files_client, jpeg_with_gps, png, png_bomb, store_settings  # noqa: F401

PHOTO = "/services/v1/requests/{}/photos"


@pytest.fixture
def c(files_client):  # noqa: F811 - the fixture, imported above
    return files_client


async def new_request(c, auth, who=RES1) -> str:
    r = await submit(c, auth, who)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def post_photo(c, auth, rid, data, who=RES1, name="leak.jpg", ctype="image/jpeg", **form):
    return await c.post(PHOTO.format(rid), files={"file": (name, data, ctype)}, data=form, headers=auth(**who))


async def stored(c) -> tuple[int, int]:
    """(attachment rows, objects in the store)."""
    async with c.app.state.db.session() as s:
        rows = (await s.execute(select(func.count()).select_from(Attachment))).scalar_one()
    store = c.app.state.store
    if isinstance(store, LocalStore):
        objects = sum(1 for p in store.root.rglob("*") if p.is_file()) if store.root.exists() else 0
    else:
        import asyncio
        resp = await asyncio.to_thread(store.client.list_objects_v2, Bucket=store.bucket)
        objects = resp.get("KeyCount", 0)
    return rows, objects


async def test_photo_is_reencoded_without_gps_with_thumbnail_and_served(c, auth):
    rid = await new_request(c, auth)
    original = jpeg_with_gps()
    assert b"PhoneMaker" in original
    r = await post_photo(c, auth, rid, original, note="漏水处")
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["kind"] == "photo" and att["media_type"] == "image/jpeg" and att["stage"] == "submitted"
    assert (att["width"], att["height"]) == (640, 480) and att["note"] == "漏水处"
    assert att["url"] == f"https://onenet.example.gov.cn/services/v1/attachments/{att['id']}/content"
    got = await c.get(f"/services/v1/attachments/{att['id']}/content", headers=auth(**RES1))
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.headers["x-content-type-options"] == "nosniff" and int(got.headers["content-length"]) == att["size"]
    body = got.content
    assert b"PhoneMaker" not in body and b"Exif" not in body
    img = Image.open(io.BytesIO(body))
    assert not img.getexif() and img.size == (640, 480)
    thumb = await c.get(f"/services/v1/attachments/{att['id']}/content?variant=thumbnail", headers=auth(**RES1))
    assert thumb.status_code == 200 and max(Image.open(io.BytesIO(thumb.content)).size) == 320
    # a PNG with transparency comes back as a JPEG on white
    r = await post_photo(c, auth, rid, png(), name="screen.png", ctype="image/png")
    assert r.status_code == 201 and r.json()["media_type"] == "image/jpeg"
    listed = await c.get(f"/services/v1/requests/{rid}/attachments", headers=auth(**STAFF))
    assert [a["id"] for a in listed.json()][0] == att["id"] and len(listed.json()) == 2
    assert await stored(c) == (2, 4)


async def test_nine_photos_also_on_later_steps_and_per_object_reads(c, auth):
    rid = await new_request(c, auth)
    for _ in range(3):
        assert (await post_photo(c, auth, rid, jpeg_with_gps())).status_code == 201
    assert (await move(c, auth, rid, "accept", STAFF)).status_code == 200
    assert (await move(c, auth, rid, "dispatch", STAFF, assignee={"kind": "grid_worker", "id": "grid1"})).status_code == 200
    assert (await move(c, auth, rid, "claim", GRIDW)).status_code == 200
    assert (await move(c, auth, rid, "start", GRIDW)).status_code == 200
    for _ in range(6):  # the worker's photos of the finished job
        r = await post_photo(c, auth, rid, jpeg_with_gps(colour=(0, 200, 0)), who=GRIDW, note="完工照片")
        assert r.status_code == 201, r.text
    assert r.json()["stage"] == "in_progress" and r.json()["uploaded_role"] == "grid_worker"
    r = await post_photo(c, auth, rid, jpeg_with_gps())
    assert r.status_code == 409 and r.json()["code"] == "attachment.too_many_photos"
    aid = r_id = (await c.get(f"/services/v1/requests/{rid}/attachments", headers=auth(**OPS))).json()[0]["id"]
    assert r_id
    for who, status in ((RES1, 200), (STAFF, 200), (GRIDW, 200), (OPS, 200), (RES3, 404), (STAFF_OTHER, 404),
                        (PROVIDER, 404)):
        got = await c.get(f"/services/v1/attachments/{aid}/content", headers=auth(**who))
        assert got.status_code == status, (who, got.text)
    assert (await c.get("/services/v1/attachments/nope/content", headers=auth(**OPS))).status_code == 404
    assert await stored(c) == (9, 18)


async def test_bad_input_is_refused_with_nothing_stored(c, auth):
    rid = await new_request(c, auth)
    exe = b"MZ\x90\x00" + os.urandom(4000)
    cases = [
        (dict(data=exe, name="photo.jpg"), 415, "attachment.unsupported_type"),                    # an exe named .jpg
        (dict(data=b"PK\x03\x04" + bytes(100), name="a.jpg"), 415, "attachment.unsupported_type"),  # a zip
        (dict(data=b"<svg onload=alert(1)>", name="x.jpg"), 415, "attachment.unsupported_type"),
        (dict(data=jpeg_with_gps()[:600], name="cut.jpg"), 422, "attachment.corrupt"),             # a corrupt image
        (dict(data=b"\xff\xd8\xff" + os.urandom(3000), name="junk.jpg"), 422, "attachment.corrupt"),
        (dict(data=png_bomb(), name="bomb.png", ctype="image/png"), 422, "attachment.decompression_bomb"),
        (dict(data=jpeg_with_gps(), name="../../etc/passwd.jpg"), 422, "attachment.bad_name"),     # a name with ../
        (dict(data=jpeg_with_gps(), name="a/b.jpg"), 422, "attachment.bad_name"),
        (dict(data=b"", name="empty.jpg"), 422, "attachment.empty"),
    ]
    for kw, status, code in cases:
        r = await post_photo(c, auth, rid, kw["data"], name=kw["name"], ctype=kw.get("ctype", "image/jpeg"),
                             **({"note": "x"}))
        assert r.status_code == status, (kw["name"], r.text)
        body = r.json()
        assert r.headers["content-type"].startswith("application/problem+json") and body["code"] == code
        assert body["errors"][0]["field"] == "file"
    # Chinese first, English on request
    r = await c.post(PHOTO.format(rid), files={"file": ("x.jpg", exe, "image/jpeg")},
                     headers={**auth(**RES1), "Accept-Language": "en"})
    assert "judged by its content" in r.json()["detail"]
    # a 50 MB file: refused from its Content-Length, before a byte is read
    big = b"\xff\xd8\xff" + bytes(50 * 1024 * 1024)
    r = await post_photo(c, auth, rid, big, name="big.jpg")
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    # 12 MiB (under the route's body limit, over the photos' 10 MiB)
    r = await post_photo(c, auth, rid, b"\xff\xd8\xff" + bytes(12 * 1024 * 1024), name="big.jpg")
    assert r.status_code == 413 and r.json()["code"] == "attachment.too_large"
    # no file at all
    r = await c.post(PHOTO.format(rid), data={"note": "x"}, headers=auth(**RES1))
    assert r.status_code == 415  # a form, not multipart
    r = await c.post(PHOTO.format(rid), files={"note": (None, "x")}, headers=auth(**RES1))
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("file")
    # another person's request, an unknown one, a provider not assigned
    for who, target, status in ((RES3, rid, 404), (RES1, "no-such", 404), (PROVIDER, rid, 404)):
        r = await post_photo(c, auth, target, jpeg_with_gps(), who=who)
        assert r.status_code == status, r.text
    assert await stored(c) == (0, 0)


async def test_closed_request_takes_no_files(c, auth):
    rid = await new_request(c, auth)
    assert (await move(c, auth, rid, "reject", STAFF, note="不属于受理范围")).status_code == 200
    r = await post_photo(c, auth, rid, jpeg_with_gps())
    assert r.status_code == 409 and r.json()["code"] == "attachment.request_closed"
    assert await stored(c) == (0, 0)


async def test_store_down_is_503_and_the_request_unaffected(c, auth, store_down):
    rid = await new_request(c, auth)
    before = (await c.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()
    store_down.down(c.app)
    r = await post_photo(c, auth, rid, jpeg_with_gps())
    assert r.status_code == 503 and r.json()["code"] == "storage.unavailable" and r.headers["retry-after"]
    after = (await c.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()
    assert after["version"] == before["version"] and after["state"] == before["state"]
    assert (await move(c, auth, rid, "accept", STAFF)).status_code == 200  # the request goes on
    await store_down.up(c.app)
    assert await stored(c) == (0, 0)
    # back up: a photo stored earlier, then the store goes down for the read
    ok = await post_photo(c, auth, rid, jpeg_with_gps())
    assert ok.status_code == 201
    store_down.down(c.app)
    r = await c.get(f"/services/v1/attachments/{ok.json()['id']}/content", headers=auth(**RES1))
    assert r.status_code == 503 and r.json()["code"] == "storage.unavailable"
    await store_down.up(c.app)
