"""Material files (证明材料) on both databases and both object stores: awaiting_upload → uploaded → rejected (with a
reason) → uploaded → verified; encrypted at rest; each read of one fed to the person's access log; the events of
the once-only indicators (exchange vs upload) and a request whose materials are all present; PDFs with scripts,
launch actions or a zip bomb refused; retention by kind."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from common.storage import read_all
from svc_services.attachments.retention import purge_expired
from svc_services.base import OutboxEvent
from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import GRIDW, OPS, P1, PROVIDER, RES1, RES3, STAFF, STAFF_OTHER, move, submit
from tests.svc_services.files import (files_client, flate_bomb, flate_stream, jpeg_with_gps, pdf,  # noqa: F401
                                      store_settings)
from tests.svc_services.test_dispatch_materials import exchange
from tests.svc_services.test_attachments import post_photo, stored

UPLOAD = "/services/v1/requests/{}/materials/{}/upload"
REVIEW = "/services/v1/requests/{}/materials/{}/review"


@pytest.fixture
def c(files_client):  # noqa: F811 - the fixture, imported above
    return files_client


async def accepted_meal(c, auth, upstreams, *, department_down=True):
    state = {"department_down": department_down}
    upstreams["exchange"] = exchange(state)
    r = await submit(c, auth, RES1, item_code="YL-ZC-001", attributes={"meal_time": "lunch"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert (await move(c, auth, rid, "accept", STAFF)).status_code == 200
    return rid, state


async def put_material(c, auth, rid, data, who=RES1, code="id_card_copy", name="id.pdf", ctype="application/pdf"):
    return await c.post(UPLOAD.format(rid, code), files={"file": (name, data, ctype)}, headers=auth(**who))


async def events(c, prefix: str) -> list[OutboxEvent]:
    async with c.app.state.db.session() as s:
        rows = (await s.execute(select(OutboxEvent).where(OutboxEvent.type.startswith(prefix))
                                .order_by(OutboxEvent.id))).scalars().all()
    return list(rows)


async def test_material_flow_encrypted_logged_and_counted(c, auth, upstreams):
    rid, state = await accepted_meal(c, auth, upstreams)
    doc = pdf()
    r = await put_material(c, auth, rid, doc)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["code"] == "id_card_copy" and m["status"] == "uploaded" and m["attachment_id"]
    aid = m["attachment_id"]
    # encrypted at rest: the store holds no byte of the PDF as sent
    raw = await read_all(c.app.state.store.get(aid))
    assert b"%PDF" not in raw and b"/Catalog" not in raw and len(raw) > len(doc)
    # read back through the API, checked per object; each read of it in the person's access log (a feed row)
    for who, status in ((STAFF, 200), (RES1, 200), (GRIDW, 200), (RES3, 404), (STAFF_OTHER, 404), (PROVIDER, 404)):
        got = await c.get(f"/services/v1/attachments/{aid}/content", headers=auth(**who))
        assert got.status_code == status, (who, got.text)
        if status == 200:
            assert got.content == doc and got.headers["content-type"] == "application/pdf"
            assert got.headers["cache-control"] == "private, no-store"
    reads = await events(c, "person_access.")
    assert [(e.type, e.data["person_id"], e.data["user_id"]) for e in reads] == [
        ("person_access.material_read", P1, "staff1"), ("person_access.material_read", P1, "resident1"),
        ("person_access.material_read", P1, "grid1")]
    assert reads[0].data["fields"] == ["material:id_card_copy"] and "身份证复印件" in reads[0].data["purpose"]
    # a second file while one waits for review: refused
    again = await put_material(c, auth, rid, doc)
    assert again.status_code == 409 and again.json()["code"] == "material.not_awaiting_upload"
    # review: staff of the place only; a rejection says why
    assert (await c.post(REVIEW.format(rid, "id_card_copy"), json={"decision": "verified"},
                         headers=auth(**RES1))).status_code == 403
    r = await c.post(REVIEW.format(rid, "id_card_copy"), json={"decision": "rejected"}, headers=auth(**STAFF))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = await c.post(REVIEW.format(rid, "id_card_copy"), json={"decision": "rejected", "reason": "照片模糊"},
                     headers=auth(**STAFF))
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["review_reason"] == "照片模糊"
    r = await put_material(c, auth, rid, jpeg_with_gps(), name="id.jpg", ctype="image/jpeg")
    assert r.status_code == 201 and r.json()["status"] == "uploaded" and r.json()["attachment_id"] != aid
    r = await c.post(REVIEW.format(rid, "id_card_copy"), json={"decision": "verified"}, headers=auth(**STAFF))
    assert r.status_code == 200 and r.json()["status"] == "verified" and r.json()["review_reason"] is None
    assert not [e for e in await events(c, "request.materials_complete")]  # the exchange material is pending
    # the department answers: fetched from the exchange, and now every material is present
    state["department_down"] = False
    r = await c.post(f"/services/v1/requests/{rid}/materials/fetch", headers=auth(**STAFF))
    assert r.status_code == 200 and {m["code"]: m["status"] for m in r.json()} == {
        "dibao_certificate": "fetched", "id_card_copy": "verified"}
    obtained = [(e.data["code"], e.data["source"], e.data["via"]) for e in await events(c, "material.obtained")]
    assert obtained == [("id_card_copy", "upload", "upload"), ("id_card_copy", "upload", "upload"),
                        ("dibao_certificate", "exchange", "exchange")]
    assert [e.type for e in await events(c, "material.") if e.type != "material.obtained"] == [
        "material.rejected", "material.verified"]
    [done] = await events(c, "request.materials_complete")
    assert done.subject == rid and done.data["exchange"] == 1 and done.data["upload"] == 1
    listed = (await c.get(f"/services/v1/requests/{rid}/attachments", headers=auth(**STAFF))).json()
    assert [a["material_code"] for a in listed] == ["id_card_copy", "id_card_copy"]
    assert (await c.get(f"/services/v1/requests/{rid}/attachments", headers=auth(**PROVIDER))).status_code == 404


def js_in_object_stream() -> bytes:
    return pdf([flate_stream(b"<< /S /JavaScript /JS (app.alert(1)) >>")], catalog_extra=b"/OpenAction 4 0 R ")


@pytest.mark.parametrize("doc,code", [
    (pdf([b"<< /S /JavaScript /JS (app.alert(1)) >>"], catalog_extra=b"/OpenAction 4 0 R "), "active_content"),
    (pdf([b"<< /S /J#61vaScript /J#53 (x) >>"]), "active_content"),                 # escaped names
    (js_in_object_stream(), "active_content"),                                       # hidden in a Flate stream
    (pdf([b"<< /S /Launch /F (cmd.exe) >>"], catalog_extra=b"/OpenAction 4 0 R "), "active_content"),
    (pdf([b"<< /Type /EmbeddedFile >>"]), "active_content"),
    (pdf([flate_bomb()]), "decompression_bomb"),                                     # a zip bomb
    (pdf()[:-40], "corrupt"),                                                        # cut off
])
async def test_dangerous_pdfs_are_refused_with_nothing_stored(c, auth, upstreams, doc, code):
    rid, _ = await accepted_meal(c, auth, upstreams)
    r = await put_material(c, auth, rid, doc)
    assert r.status_code == 422 and r.json()["code"] == f"attachment.{code}", r.text
    assert r.json()["errors"][0]["field"] == "file"
    assert await stored(c) == (0, 0)
    m = (await c.get(f"/services/v1/requests/{rid}/materials", headers=auth(**RES1))).json()
    assert {x["code"]: x["status"] for x in m}["id_card_copy"] == "awaiting_upload"


async def test_materials_refusals(c, auth, upstreams):
    rid, _ = await accepted_meal(c, auth, upstreams)
    r = await put_material(c, auth, rid, pdf(), code="no_such")
    assert r.status_code == 404 and r.json()["code"] == "material.not_found"
    r = await put_material(c, auth, rid, pdf(), who=RES3)     # another person's request
    assert r.status_code == 404
    r = await put_material(c, auth, rid, b"MZ" + bytes(1000), name="id.pdf")
    assert r.status_code == 415
    r = await c.post(REVIEW.format(rid, "id_card_copy"), json={"decision": "verified"}, headers=auth(**STAFF))
    assert r.status_code == 409 and r.json()["code"] == "material.not_uploaded"
    r = await c.post(REVIEW.format(rid, "id_card_copy"), json={"decision": "maybe", "x": 1}, headers=auth(**STAFF))
    assert r.status_code == 422
    assert await stored(c) == (0, 0)


async def test_retention_purges_materials_before_photos(c, auth, upstreams, clock):
    rid, _ = await accepted_meal(c, auth, upstreams)
    photo = (await post_photo(c, auth, rid, jpeg_with_gps())).json()["id"]
    mat = (await put_material(c, auth, rid, pdf())).json()["attachment_id"]
    settings = c.app.state.settings
    await purge_expired(c.app.state.db, c.app.state.store, settings, clock.now() + timedelta(days=1000))
    assert await stored(c) == (2, 3)  # open requests keep their files
    assert (await move(c, auth, rid, "cancel", RES1)).status_code == 200
    await purge_expired(c.app.state.db, c.app.state.store, settings, clock.now() + timedelta(days=181))
    r = await c.get(f"/services/v1/attachments/{mat}/content", headers=auth(**STAFF))
    assert r.status_code == 410 and r.json()["code"] == "attachment.purged"
    assert (await c.get(f"/services/v1/attachments/{photo}/content", headers=auth(**STAFF))).status_code == 200
    await purge_expired(c.app.state.db, c.app.state.store, settings, clock.now() + timedelta(days=731))
    assert (await c.get(f"/services/v1/attachments/{photo}/content", headers=auth(**STAFF))).status_code == 410
    assert await stored(c) == (2, 0)
    listed = (await c.get(f"/services/v1/requests/{rid}/attachments", headers=auth(**OPS))).json()
    assert all(a["purged"] and a["url"] is None for a in listed)
