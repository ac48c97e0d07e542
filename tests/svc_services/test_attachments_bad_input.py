"""Issue 27's bad input on the materials' door too (the photos' is in test_attachments.py), on both databases and
both object stores: a 50 MB file, an executable renamed, a corrupt image, a name with `../`, another person's
request, an upload to a closed request, an object store that is down. Each a clear problem naming `file` (or the
request), nothing stored, nothing half-linked: the material stays `awaiting_upload`, the request as it was, no
material event."""
from __future__ import annotations

import os

import pytest

from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import OPS, RES1, RES3, move
from tests.svc_services.files import files_client, jpeg_with_gps, pdf, store_settings  # noqa: F401
from tests.svc_services.test_attachments import stored
from tests.svc_services.test_attachments_materials import accepted_meal, events, put_material


@pytest.fixture
def c(files_client):  # noqa: F811 - the fixture, imported above
    return files_client


async def unchanged(c, auth, rid, before):
    after = (await c.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()
    assert (after["version"], after["state"]) == (before["version"], before["state"])
    m = (await c.get(f"/services/v1/requests/{rid}/materials", headers=auth(**RES1))).json()
    assert {x["code"]: x["status"] for x in m}["id_card_copy"] == "awaiting_upload"
    assert await stored(c) == (0, 0)
    assert await events(c, "material.obtained") == []


async def test_bad_material_files_are_refused_with_nothing_stored(c, auth, upstreams):
    rid, _ = await accepted_meal(c, auth, upstreams)
    before = (await c.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()
    cases = [
        (dict(data=b"MZ\x90\x00" + os.urandom(4000), name="scan.jpg", ctype="image/jpeg"), 415,
         "attachment.unsupported_type"),                                                   # an executable renamed
        (dict(data=jpeg_with_gps()[:700], name="scan.jpg", ctype="image/jpeg"), 422, "attachment.corrupt"),
        (dict(data=pdf(), name="../../id.pdf"), 422, "attachment.bad_name"),
        (dict(data=pdf(), name="..\\id.pdf"), 422, "attachment.bad_name"),
        (dict(data=b"", name="id.pdf"), 422, "attachment.empty"),
    ]
    for kw, status, code in cases:
        r = await put_material(c, auth, rid, kw["data"], name=kw["name"], ctype=kw.get("ctype", "application/pdf"))
        assert r.status_code == status, (kw["name"], r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code and r.json()["errors"][0]["field"] == "file", r.text
        assert r.json()["title"] and not r.json()["title"].isascii()   # Chinese by default
    # a 50 MB file: refused before it is read whole
    r = await put_material(c, auth, rid, b"%PDF-1.7\n" + bytes(50 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["code"] in ("payload_too_large", "attachment.too_large"), r.text
    # another person's request: as an unknown one
    r = await put_material(c, auth, rid, pdf(), who=RES3)
    assert r.status_code == 404
    await unchanged(c, auth, rid, before)


async def test_a_closed_request_takes_no_material(c, auth, upstreams):
    rid, _ = await accepted_meal(c, auth, upstreams)
    assert (await move(c, auth, rid, "cancel", RES1)).status_code == 200
    before = (await c.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()
    r = await put_material(c, auth, rid, pdf())
    assert r.status_code == 409 and r.json()["code"] == "attachment.request_closed", r.text
    await unchanged(c, auth, rid, before)


async def test_store_down_is_503_for_a_material_and_nothing_linked(c, auth, upstreams, store_down):
    rid, _ = await accepted_meal(c, auth, upstreams)
    before = (await c.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()
    store_down.down(c.app)
    r = await put_material(c, auth, rid, pdf())
    assert r.status_code == 503 and r.json()["code"] == "storage.unavailable" and r.headers["retry-after"]
    await store_down.up(c.app)
    await unchanged(c, auth, rid, before)
    r = await put_material(c, auth, rid, pdf())   # back up: the same upload goes through
    assert r.status_code == 201, r.text
