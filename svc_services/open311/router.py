"""Open311 GeoReport v2 under `/open311/v2/` (the gateway routes `/open311/...` here).

Reads are public (no token: these routes do not depend on `get_principal`) and carry no personal data (see
`open311.service`); the gateway forwards them anonymously (gateway/routing/open311.py).
`POST requests.{format}` is form-encoded per the spec. `api_key` is an access token the gateway issued: a client
app / member system of the exchange gets one with its client credentials (`POST /auth/v1/token`,
grant_type=client_credentials), so the key names the exchange member (and its role, e.g. `system`), and the
gateway checks it (revoked members are stopped there), rate-limits and logs the call under that member; a
resident's or staff member's own login token works as well (then the request is theirs / registered by them). An
`Authorization: Bearer` header is accepted instead of `api_key`. Who the request is for follows the token, as on
`/services/v1/requests`: a resident submits for themselves, a proxy for the person it acts for, staff and member
systems may name `account_id` (the person id) or none. Submissions go through the same intake as `/services/v1/requests` (channel `api`), so items,
attributes, location, roles and Idempotency-Key behave identically. Errors are Open311's `[{code, description}]`.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from common.acting import checked_by_handler
from common.auth import Principal, TokenVerifier, principal_from_claims
from common.db import Database
from common.deps import AppClock, AppDb, AppSettings, AppVerifier
from common.errors import Problem, request_language
from common.crypto import FieldProtection
from svc_services.attachments.models import Attachment
from svc_services.attachments.reading import open_object, stream
from svc_services.attachments.router import AppProtection, AppStore, base_url
from svc_services.attachments.service import delete_objects
from svc_services.attachments.signed import signed_url, valid
from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion
from svc_services.open311 import contract, media as post_media, service as o311
from svc_services.open311.formats import FORMATS, errors, render
from svc_services.requests.group_commit import Intake
from svc_services.requests.intake import submit_request
from svc_services.requests.models import ServiceRequest
from svc_services.requests.schemas import Location, RequestCreate
from svc_services.settings import ServicesSettings

router = APIRouter(prefix="/open311/v2", tags=["open311 GeoReport v2"])
_ATTR = re.compile(contract.ATTRIBUTE_FIELD)


class Open311Error(Exception):
    def __init__(self, status: int, *items: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.items = items
        self.headers = headers


def _fmt(value: str) -> str:
    if value not in FORMATS:
        raise Open311Error(404, f"Unknown format '{value}': use .json or .xml")
    return value


def _pick(value: Any, lang: str) -> str | None:
    if isinstance(value, tuple):
        return value[1] if lang.startswith("en") else value[0]
    return value


def _problem_items(exc: Problem, lang: str) -> list[str]:
    if exc.errors:
        out = []
        for e in exc.errors:
            field = e.get("field", "")
            m = re.match(r"^attributes\.(.+)$", field)
            field = f"attribute[{m.group(1)}]" if m else {"location": "lat/long", "location.grid": "address_id",
                                                          "item_code": "service_code", "file": "media"}.get(field, field)
            out.append(f"{field}: {_pick(e.get('message'), lang)}")
        return out
    return [_pick(exc.detail, lang) or exc.code]


async def _guard(request: Request, fmt: str, work) -> Response:
    """Run `work()`, answering every failure in Open311's error format (422 becomes the spec's 400)."""
    try:
        return await work(_fmt(fmt))
    except Open311Error as exc:
        return errors(fmt, exc.status, [(exc.status, d) for d in exc.items], exc.headers)
    except contract.BadQuery as exc:
        return errors(fmt, 400, [(400, str(exc))])
    except Problem as exc:
        status = 400 if exc.status == 422 else exc.status
        return errors(fmt, status, [(status, d) for d in _problem_items(exc, request_language(request))],
                      {k: v for k, v in exc.headers.items() if k.lower() == "www-authenticate"} or None)


# ------------------------------------------------------------------------------------------------ discovery
@router.get("/discovery.{fmt}", summary="Open311 discovery")
async def discovery(fmt: str, request: Request, settings: AppSettings) -> Response:
    async def work(fmt: str) -> Response:
        base = (settings.public_url or settings.gateway_url).rstrip("/") + "/open311/v2/"
        body = {"changeset": "2026-03-01T00:00:00+00:00", "contact": "社区一网通办平台运维（见 /docs）",
                "key_service": "api_key = 由网关签发的访问令牌（POST /auth/v1/token） / a gateway-issued access token",
                "endpoints": [{"specification": o311.SPEC_URL, "url": base, "changeset": "2026-03-01T00:00:00+00:00",
                               "type": "production", "formats": ["application/json", "text/xml"]}]}
        return render(fmt, "discovery", body)
    return await _guard(request, fmt, work)


# ------------------------------------------------------------------------------------------------ services
@router.get("/services.{fmt}", summary="Open311 service list")
async def service_list(fmt: str, request: Request, db: AppDb) -> Response:
    async def work(fmt: str) -> Response:
        async with db.session() as session:
            rows = await o311.services(session)
        return render(fmt, "services", [o311.service_out(i, v) for i, v in rows])
    return await _guard(request, fmt, work)


@router.get("/services/{service_code}.{fmt}", summary="Open311 service definition")
async def service_definition(service_code: str, fmt: str, request: Request, db: AppDb) -> Response:
    async def work(fmt: str) -> Response:
        async with db.session() as session:
            item = await session.get(CatalogueItem, service_code)
            v = await session.get(CatalogueItemVersion, (item.code, item.current_version)) if item else None
        if item is None or not item.active or v is None or "api" not in (v.channels or []):
            raise Open311Error(404, f"service_code {service_code} not found")
        return render(fmt, "service_definition", o311.definition_out(v))
    return await _guard(request, fmt, work)


# ------------------------------------------------------------------------------------------------ requests
def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return parts or None


async def _request_docs(db: Database, reqs: list[ServiceRequest], extensions: bool, media: "Media") -> list[dict[str, Any]]:
    async with db.session() as session:
        items = await o311.item_facts(session, reqs)
        published = await o311.publications(session, [r.id for r in reqs])
        tls = await o311.timelines(session, [r.id for r in reqs]) if extensions else {}
        shown = [r.id for r in reqs if o311.photo_public(r, items[r.id][1], published.get(r.id))]
        photos = await o311.first_photos(session, shown)
    return [o311.request_out(r, items[r.id], published.get(r.id), tls.get(r.id) if extensions else None,
                             media.url(photos[r.id]) if r.id in photos else None)
            for r in reqs]


class Media:
    """Mints the signed photo URLs of one answer (attachments.signed)."""

    def __init__(self, settings: ServicesSettings, protection: FieldProtection, now: datetime) -> None:
        self.base, self.protection, self.now = base_url(settings), protection, now
        self.ttl = settings.media_url_ttl_seconds

    def url(self, attachment_id: str) -> str:
        return signed_url(self.base, self.protection, attachment_id, self.now, self.ttl)


@router.get("/requests.{fmt}", summary="Open311 service requests (public, no personal data)",
            openapi_extra={"parameters": contract.LIST_QUERY})
async def list_requests(fmt: str, request: Request, db: AppDb, settings: AppSettings, clock: AppClock,
                        protection: AppProtection) -> Response:
    async def work(fmt: str) -> Response:
        q = request.query_params
        ids = _split(q.get("service_request_id"))
        statuses, extensions = contract.statuses(q), contract.extensions(q)
        start, end = contract.date(q, "start_date"), contract.date(q, "end_date")
        if start and end and end < start:
            raise Open311Error(400, "end_date is before start_date")
        async with db.session() as session:
            reqs = await o311.find_requests(session, settings, ids=ids,
                                            service_codes=_split(q.get("service_code")), start=start, end=end,
                                            statuses=statuses, now=clock.now())
        media = Media(settings, protection, clock.now())
        return render(fmt, "service_requests", await _request_docs(db, reqs, extensions, media))
    return await _guard(request, fmt, work)


async def _public_request(db: Database, settings: ServicesSettings, request_id: str) -> ServiceRequest:
    async with db.session() as session:
        req = await session.get(ServiceRequest, request_id)
    if req is None or not o311.is_public(req, settings):
        raise Open311Error(404, f"service_request_id {request_id} not found")
    return req


@router.get("/requests/{request_id}.{fmt}", summary="Open311 one service request (public, no personal data)",
            openapi_extra={"parameters": [contract.EXTENSIONS]})
async def get_request(request_id: str, fmt: str, request: Request, db: AppDb, settings: AppSettings,
                      clock: AppClock, protection: AppProtection) -> Response:
    async def work(fmt: str) -> Response:
        extensions = contract.extensions(request.query_params)
        req = await _public_request(db, settings, request_id)
        media = Media(settings, protection, clock.now())
        return render(fmt, "service_requests", await _request_docs(db, [req], extensions, media))
    return await _guard(request, fmt, work)


_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_MEDIA_PARAMS = [  # read by the endpoint itself, so that a bad one is answered in Open311's error format
    {"name": "expires", "in": "query", "required": True, "description": "到期时间（Unix 秒）expiry, Unix seconds",
     "schema": {"type": "integer", "minimum": 0, "maximum": 2**40}},
    {"name": "signature", "in": "query", "required": True, "description": "服务签名 the service's signature",
     "schema": {"type": "string", "pattern": _SIGNATURE.pattern}}]


@router.get("/media/{attachment_id}.jpg", summary="Open311 media_url: a request's photo (signed, expiring URL)",
            openapi_extra={"parameters": _MEDIA_PARAMS},
            responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
async def media(attachment_id: str, request: Request, db: AppDb, settings: AppSettings, clock: AppClock,
                store: AppStore, protection: AppProtection):
    async def work(fmt: str) -> Response:
        q = request.query_params
        expires, signature = q.get("expires") or "", q.get("signature") or ""
        if not expires.isdigit() or len(expires) > 13:
            raise Open311Error(400, "expires: required, Unix seconds")
        if not _SIGNATURE.match(signature):
            raise Open311Error(400, "signature: required, 64 hexadecimal digits")
        expires = int(expires)
        if not valid(protection, attachment_id, expires, signature, clock.now()):
            raise Open311Error(403, "media_url: signature invalid or expired; read the request again for a fresh URL")
        async with db.session() as session:
            att = await session.get(Attachment, attachment_id)
            req = await session.get(ServiceRequest, att.request_id) if att is not None else None
            items = await o311.item_facts(session, [req]) if req is not None else {}
            pub = (await o311.publications(session, [req.id])).get(req.id) if req is not None else None
        if (att is None or att.kind != "photo" or att.purged_at is not None or not o311.is_public(req, settings)
                or not o311.photo_public(req, items[req.id][1], pub)):
            raise Open311Error(404, f"media {attachment_id} not found")
        chunks, first = await open_object(store, None, att)
        return StreamingResponse(stream(first, chunks), media_type="image/jpeg", headers={
            "Content-Length": str(att.size), "X-Content-Type-Options": "nosniff",
            "Cache-Control": f"public, max-age={min(max(expires - int(clock.now().timestamp()), 0), 300)}"})
    return await _guard(request, "json", work)


@router.get("/tokens/{token}.{fmt}", summary="Open311 request id from a token")
async def get_token(token: str, fmt: str, request: Request, db: AppDb, settings: AppSettings) -> Response:
    # Requests are created synchronously, so the token handed out on POST is the request id itself.
    async def work(fmt: str) -> Response:
        req = await _public_request(db, settings, token)
        return render(fmt, "service_requests", [{"service_request_id": req.id, "token": token}])
    return await _guard(request, fmt, work)


# ------------------------------------------------------------------------------------------------ POST
async def _principal(request: Request, verifier: TokenVerifier, form: dict[str, Any]) -> Principal:
    token = form.get("api_key")
    auth = request.headers.get("authorization")
    if not token and auth and auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    if not token or not isinstance(token, str):
        raise Open311Error(401, "api_key required (or Authorization: Bearer <token>)",
                           headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = await verifier.verify(token)
        principal = principal_from_claims(claims, token)
    except Problem:
        raise Open311Error(403, "Invalid api_key") from None
    request.state.principal = principal
    request.state.caller = principal.caller
    return principal


def _coerce(datatype: str, values: list[str]) -> Any:
    if datatype == "multivaluelist":
        return [v for v in values if v != ""]
    value = values[-1] if len(values) == 1 else values
    if datatype == "number" and isinstance(value, str):
        try:
            return int(value) if re.fullmatch(r"[+-]?\d+", value.strip()) else float(value)
        except ValueError:
            return value  # reported as ill-typed by validate_attributes
    return value


def _float(form: dict[str, list[str]], name: str) -> float | None:
    raw = (form.get(name) or [""])[-1].strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise Open311Error(400, f"{name}: not a number") from None


@router.post("/requests.{fmt}", summary="Open311 submit a service request (form-encoded, or multipart with a "
                                         "`media` photo; api_key)", status_code=201,
             responses=contract.POST_RESPONSES, openapi_extra=contract.POST_BODY,
             dependencies=[checked_by_handler("requests.submit")])
async def post_request(fmt: str, request: Request, db: AppDb, verifier: AppVerifier, intake: Intake,
                       clock: AppClock, settings: AppSettings, store: AppStore) -> Response:
    async def work(fmt: str) -> Response:
        pairs, upload = await post_media.read_body(request, settings.max_body_bytes, Open311Error)
        form: dict[str, list[str]] = {}
        attrs_raw: dict[str, list[str]] = {}
        for k, v in pairs:
            m = _ATTR.match(k)
            if m:
                attrs_raw.setdefault(m.group(1), []).append(v)
            else:
                form.setdefault(k, []).append(v)
        principal = await _principal(request, verifier, {"api_key": (form.get("api_key") or [None])[-1]})
        one = {k: v[-1] for k, v in form.items()}
        code = (one.get("service_code") or "").strip()
        if not code:
            raise Open311Error(400, "service_code: required")
        async with db.session() as session:
            item = await session.get(CatalogueItem, code)
            iv = await session.get(CatalogueItemVersion, (item.code, item.current_version)) if item else None
        if item is None or not item.active or iv is None:
            raise Open311Error(404, f"service_code {code} not found")
        types = {a["code"]: a["datatype"] for a in iv.attributes}
        attributes = {k: _coerce(types.get(k, "string"), v) for k, v in attrs_raw.items()}
        lat, long = _float(form, "lat"), _float(form, "long")
        address_id = (one.get("address_id") or "").strip() or None
        if address_id and not contract.GRID.match(address_id):
            raise Open311Error(400, "address_id: a 15-digit grid code")
        if lat is None and long is None and not address_id:
            raise Open311Error(400, "lat/long or address_id (grid code) required")
        description = (one.get("description") or "").strip() or iv.name
        try:
            body = RequestCreate(
                item_code=code, channel="api", description=description, attributes=attributes,
                location=Location(lat=lat, long=long, grid=address_id, address=one.get("address_string") or None),
                person_id=(one.get("account_id") or "").strip() or None,
                media_url=(one.get("media_url") or "").strip() or None)
        except ValidationError as exc:
            fields = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise Open311Error(400, *fields) from None
        notice = f"已提交，{iv.name}承诺 {iv.response_hours:g} 小时内响应"
        # the photo checked and stored before the request is written (media.py: nothing half-written)
        photo = await post_media.examine(upload) if upload is not None else None
        aid, cols = await post_media.store(store, photo) if photo is not None else (None, None)
        try:
            resp = await submit_request(intake, principal, body, clock,
                                        key=request.headers.get("idempotency-key"), path="/open311/v2/requests")
        except BaseException:
            if aid is not None:
                await delete_objects(store, aid)
            raise
        req = json.loads(resp.body)
        if aid is not None:
            if resp.status_code != 201 or resp.headers.get("idempotency-replayed") == "true":  # a replay: linked once
                await delete_objects(store, aid)
            else:
                await post_media.link(db, store, principal, req["id"], aid, photo, cols, clock.now())
        # contact fields (first_name, last_name, email, phone, device_id) are not stored: the token says who.
        # GeoReport v2: the answer carries service_request_id or, when that is not known yet, a token; a
        # request is created at once, so its id and never both
        doc = [{"service_request_id": req["id"], "service_notice": notice,
                "account_id": body.person_id}]
        headers = {k: v for k, v in resp.headers.items() if k.lower() == "idempotency-replayed"}
        return render(fmt, "service_requests", doc, resp.status_code, headers or None)
    return await _guard(request, fmt, work)
