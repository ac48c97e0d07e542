"""Photos and material files of requests (issue 27, svc_services/attachments, svc_services/materials/uploads.py):
rules and cells, written from the policy.

The policy (DESIGN "Identity and authorisation" and "Data protection", DOMAIN workflows 1 and 5, the issue):
- a request's files are part of the request: whoever may see the request (its requester or their proxy, place
  staff of its grid and above, the department or provider it is assigned to, ops) lists its photos and adds
  photos while it is open (the resident's photo of the leak, the worker's of the finished job); anyone else gets
  404 as for an unknown id; member systems reach svc_services' resources only under a grant (403 at the gateway);
- a material file (an ID card scan, a certificate) is sensitive personal information: it is read by the person
  (or their proxy), the staff handling the request (place staff of its grid and above), ops, and a department only
  where the request is its own (assigned); a provider working a request sees that a material is there, not the
  file; every read lands in the person's access log;
- a material's file is brought by the requester (or proxy) or by staff of the place at the counter (a scan);
  it is reviewed (verified / rejected with a reason) by the staff of the place and ops, never by the requester.

The targets: R1 (P1's accepted request in A1 of 幸福) with a photo by staff1; a request of P1 for an item that
requires an uploaded ID card copy, with the file brought by resident1; a public matter staff1 reported with a
photo and published, whose photo Open311 names by a signed URL (`media_url`); Open311's multipart POST with a
`media` photo follows the submission's rule (the photo is the submitter's own report). Fresh requests are made as ops for every
call that changes a material (an upload moves it, a review ends it).
"""
from __future__ import annotations

import io

from PIL import Image

from tests.authz.policy import A1, DENY, HIDE, OK, P1, Caller, Rule, allow, no_grant
from tests.authz.test_matrix import CELLS as MATRIX_CELLS, REQUEST_BODY, Cell, World, get, holds, ids, open311

MATERIAL = {"code": "id_card_copy", "name": "身份证复印件", "source": "upload"}
PDF = (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>"
       b"\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 80, 40)).save(out, "JPEG")
    return out.getvalue()


JPEG = _jpeg()


def sees_r1(c: Caller) -> bool:
    return c.own(P1) or c.staff_of(A1) or c.ops


def _hidden(c: Caller) -> str:
    return DENY if no_grant(c) else HIDE


RULES = {
    "attachment.photo": Rule("R1's photos are added by whoever sees R1 while it is open: P1 (or a proxy for P1), "
                             "place staff of A1 and above, the assignee (none yet), ops; others 404 as for an "
                             "unknown request; member systems 403 (no services.requests grant)",
                             allow(sees_r1, _hidden)),
    "attachment.read": Rule("a photo of R1 is read by whoever sees R1 (the requester, place staff of A1 and above, "
                            "ops); others 404 as for an unknown file; member systems 403 at the gateway",
                            allow(sees_r1, _hidden)),
    "attachment.material.read": Rule("P1's ID card copy: P1 (or a proxy for P1), the staff handling the request "
                                     "(place staff of A1 and above), ops; a department or provider not holding "
                                     "the request, other residents and staff elsewhere 404; member systems 403",
                                     allow(sees_r1, _hidden)),
    "material.upload": Rule("a material's file is brought by the requester (or proxy) or by place staff of A1 and "
                            "above at the counter, and ops; others 404 as for an unknown request; systems 403",
                            allow(sees_r1, _hidden)),
    "attachment.media": Rule("Open311's media_url: a public matter's photo (a public item, no person's own "
                             "request, text published by staff) is public like the GeoReport reads that hand out "
                             "its signed, expiring URL: whoever holds the URL reads it, signed in or not",
                             lambda c: OK),
    "material.review": Rule("an uploaded material is verified or rejected by place staff of A1 and above and ops "
                            "(DOMAIN workflow 5: staff check the papers); P1 sees it but may not review (403 "
                            "material.not_reviewer); others 404; systems 403",
                            allow(lambda c: c.staff_of(A1) or c.ops,
                                  lambda c: DENY if no_grant(c) or c.own(P1) else HIDE),
                            code=lambda c: "material.not_reviewer" if c.own(P1) and not no_grant(c) else None),
}


def _material_request(w: World) -> dict:
    """A fresh request of P1 in A1 for the item that requires an uploaded ID card copy."""
    return w.call("ops1", "POST", "/services/v1/requests", json={
        **REQUEST_BODY, "item_code": w.ids["material_item"], "person_id": P1})


def _files(data: bytes, name: str, ctype: str) -> dict:
    return {"files": {"file": (name, data, ctype)}}


def photo_upload(w: World, c: Caller, oid: str | None):
    rid = oid or w.request_p1()["id"]
    return "POST", f"/services/v1/requests/{rid}/photos", _files(JPEG, "photo.jpg", "image/jpeg")


def material_upload(w: World, c: Caller, oid: str | None):
    rid = oid or _material_request(w)["id"]
    return "POST", f"/services/v1/requests/{rid}/materials/id_card_copy/upload", _files(PDF, "id.pdf",
                                                                                       "application/pdf")


def material_review(w: World, c: Caller, oid: str | None):
    if oid:
        rid = oid
    else:
        rid = _material_request(w)["id"]
        w.pt.request("POST", f"/services/v1/requests/{rid}/materials/id_card_copy/upload",
                     headers=w.headers("staff1"), **_files(PDF, "id.pdf", "application/pdf"))
    return "POST", f"/services/v1/requests/{rid}/materials/id_card_copy/review", {"json": {"decision": "verified"}}


def open311_with_media(w: World, c: Caller, oid: str | None):
    """GeoReport's multipart POST with its `media` photo: the submission's own photo, so the submission's rule."""
    method, path, kw = open311(w, c, oid)
    return method, path, {**kw, **{"files": {"media": ("lamp.jpg", JPEG, "image/jpeg")}}}


# the endpoint's cells are test_matrix.py's (a domain may not name it again): the media variant joins them
MATRIX_CELLS["POST /open311/v2/requests.{fmt}"].append(Cell("open311.submit", open311_with_media))
CELLS = {
    "POST /services/v1/requests/{request_id}/photos": [Cell("attachment.photo", photo_upload)],
    "GET /services/v1/requests/{request_id}/attachments": [
        Cell("request.read", get("/services/v1/requests/{}/attachments", ids("request_id")),
             listed=holds("photo_id"), sees=sees_r1)],
    "GET /services/v1/attachments/{attachment_id}/content": [
        Cell("attachment.read", get("/services/v1/attachments/{}/content", ids("photo_id"))),
        Cell("attachment.material.read", get("/services/v1/attachments/{}/content", ids("material_file_id")))],
    "GET /open311/v2/media/{attachment_id}.jpg": [Cell("attachment.media", lambda w, c, oid: (
        "GET", w.ids["media_path"], {}))],
    "POST /services/v1/requests/{request_id}/materials/{code}/upload": [Cell("material.upload", material_upload)],
    "POST /services/v1/requests/{request_id}/materials/{code}/review": [Cell("material.review", material_review)],
}
FILL = {"{attachment_id}": "00000000-0000-7000-8000-000000000000", "{code}": "id_card_copy"}


def setup(w: World) -> None:
    """The matrix's svc_services keeps its files under the platform's temporary directory; an item requiring an
    uploaded ID card copy; R1's photo (by staff1) and P1's ID card copy on a request of that item (by resident1)."""
    from common.storage import LocalStore

    services = w.pt.platform.apps["svc_services"]
    services.state.store = LocalStore(w.pt.platform.tmp / "objects" / "svc_services")
    base = w.call("ops1", "GET", "/services/v1/catalogue/items/SH-WX-001")
    from svc_services.catalogue.schemas import ItemContent

    code = w.uid("AUTHZ-MAT").upper()
    w.call("ops1", "POST", "/services/v1/catalogue/items", json={
        **{k: base[k] for k in ItemContent.model_fields}, "code": code, "name": f"authz {code}",
        "materials": [MATERIAL]})
    w.ids["material_item"] = code
    r1 = w.ids["request_id"]
    w.ids["photo_id"] = w.call("staff1", "POST", f"/services/v1/requests/{r1}/photos",
                               **_files(JPEG, "photo.jpg", "image/jpeg"))["id"]
    rid = _material_request(w)["id"]
    m = w.call("resident1", "POST", f"/services/v1/requests/{rid}/materials/id_card_copy/upload",
               **_files(PDF, "id.pdf", "application/pdf"))
    w.ids["material_file_id"] = m["attachment_id"]
    # a public matter (personal: false) reported by staff1 with a photo, its text published: Open311 names the photo
    public = w.uid("AUTHZ-PUB").upper()
    w.call("ops1", "POST", "/services/v1/catalogue/items", json={
        **{k: base[k] for k in ItemContent.model_fields}, "code": public, "name": f"authz {public}", "personal": False})
    pub = w.call("staff1", "POST", "/services/v1/requests", json={**REQUEST_BODY, "item_code": public})["id"]
    w.call("staff1", "POST", f"/services/v1/requests/{pub}/photos", **_files(JPEG, "lamp.jpg", "image/jpeg"))
    w.call("staff1", "PUT", f"/services/v1/requests/{pub}/publication", json={"description": "authz 路灯不亮"})
    url = w.call("ops1", "GET", f"/open311/v2/requests/{pub}.json")[0]["media_url"]
    from urllib.parse import urlsplit
    w.ids["media_path"] = f"{urlsplit(url).path}?{urlsplit(url).query}"
