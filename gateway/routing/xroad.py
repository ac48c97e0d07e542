"""X-Road REST compatibility (PR-REST 1.0 and PR-MREST, docs/adr/0016) for department systems that speak it.

`/r1/{instance}/{memberClass}/{memberCode}/{subsystemCode}/{serviceCode}/{path}` is mapped onto the catalogue
entry with that X-Road address (`ResourceView`: the owner's member code, member class, subsystem and service
code in X-Road's identifier characters) and forwarded to `{path_prefix}/{path}` with the same token, grant,
masking, rate-limit and message-log treatment as any other exchange. Anything else under `/r1/` is a request
that does not comply with the protocol: a `Client.BadRequest` fault, never a platform 404.

The protocol's rules (identifiers, the service id read from the raw path, the last `X-Road-Client`, the request
hash, the faults' status codes and bodies) live in `gateway.exchange.xroad_protocol`; what the metadata services
answer in `gateway.exchange.xroad_metadata`. `X-Road-Client` must name the member the bearer token belongs to.
`X-Road-Id` (generated when absent), `X-Road-UserId` and `X-Road-Issue` are accepted (the user is logged beside
the calling system's own user; the issue is logged as the purpose when `X-OneNet-Purpose` is absent). Responses
carry `X-Road-Client`, `X-Road-Service`, `X-Road-Id`, `X-Road-Request-Id` and `X-Road-Request-Hash`.

Metadata services: `GET /r1/listClients` (also `/listClients`; `text/xml` unless JSON is asked for), and per
provider subsystem `GET /r1/{instance}/{class}/{member}/{subsystem}/listMethods`, `…/allowedMethods`,
`…/getOpenAPI?serviceCode=…`. The edge (nginx) forwards every `/r1/` call here unchanged.
"""
from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.responses import Response

from common.context import request_id_var
from common.deps import AppDb, AppSettings, state
from common.errors import Problem
from gateway.exchange import xroad_metadata as meta
from gateway.exchange.xroad_protocol import (
    METADATA, XRoadFault, client_id, fault_response, is_identifier, last_client_header, parse_service_path,
    request_hash, xroad_code)
from gateway.members.models import Member
from gateway.routing.gate import Call

router = APIRouter(tags=["x-road X-Road REST 兼容"])

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
ORIGIN_LEAKING = {"x-onenet-service", "server", "x-powered-by", "via"}

# problem code → X-Road fault type (the status follows from the type: Client.* 400, Server.* 500)
FAULTS = {
    "unauthenticated": "Client.Unauthenticated", "invalid_token": "Client.InvalidToken",
    "member_revoked": "Client.MemberRevoked", "exchange.no_grant": "Client.AccessDenied",
    "exchange.not_shared": "Client.AccessDenied", "exchange.not_catalogued": "Server.ServerProxy.UnknownService",
    "rate_limited": "Client.TooManyRequests", "upstream_unavailable": "Server.ServerProxy.ServiceFailed",
    "upstream_timeout": "Server.ServerProxy.ServiceTimeout", "exchange.audit_backlog": "Server.ServerProxy.Busy",
}


def _as_fault(exc: Problem) -> XRoadFault:
    if isinstance(exc, XRoadFault):
        return exc
    fault = FAULTS.get(exc.code) or ("Server.ServerProxy.InternalError" if exc.status >= 500 else "Client.BadRequest")
    detail = exc.detail[1] if isinstance(exc.detail, tuple) else (exc.detail or exc.code)
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "retry-after"}
    return XRoadFault(fault, str(detail), headers=headers)


def _render(exc: Problem, request: Request) -> Response:
    f = _as_fault(exc)
    return fault_response(f.fault, f.message, request.headers.get("accept"), f.headers)


def _raw_path(request: Request) -> bytes:
    scope = request.scope
    raw = scope.get("raw_path") or scope["path"].encode()
    raw = raw.split(b"?", 1)[0]  # some servers (httpx's ASGI transport) put the query in raw_path
    root = (scope.get("root_path") or "").encode()
    return raw[len(root):] if root and raw.startswith(root) else raw


def _same_member(request: Request, instance: str, member: str) -> None:
    client = client_id(request.scope["headers"], instance)
    if client[2] != xroad_code(member):
        raise XRoadFault("Client.Unauthorized", "X-Road-Client does not match the token's member")


def _provider(policy, member_class: str, member_code: str, subsystem: str):
    return sorted((r for r in policy.resources.values()
                   if (r.xroad_member_class, r.xroad_member_code, r.xroad_subsystem) == (member_class, member_code,
                                                                                      subsystem)
                   and is_identifier(r.xroad_member_code) and is_identifier(r.xroad_service)),
                  key=lambda r: r.xroad_service)


async def _metadata(request: Request, gate, aggregate, instance: str, ids: list[str]) -> Response:
    principal = await gate.forwarder.authenticate(request)
    _same_member(request, instance, principal.member)
    services = _provider(gate.policy, ids[1], ids[2], ids[3])
    doc = await aggregate.document(request.app.openapi())
    if ids[4] == "getOpenAPI":
        code = request.query_params.get("serviceCode")
        res = next((r for r in services if r.xroad_service == code), None)
        if res is None:
            raise XRoadFault("Server.ServerProxy.UnknownService", f"Unknown service code {code!r}")
        return Response(meta.dumps(meta.service_description(doc, res, instance)),
                        media_type="application/json; charset=utf-8")
    if ids[4] == "allowedMethods":
        now = gate.clock.now()
        services = [r for r in services if r.owner == principal.member or (
            r.sharing_class != "not_shared" and (g := gate.policy.grants.get((principal.member, r.code)))
            is not None and g.live(now))]
    body = {"service": [meta.service_entry(instance, r, meta.service_description(doc, r, instance))
                        for r in services]}
    return Response(meta.dumps(body), media_type="application/json; charset=utf-8")


@router.get("/r1/listClients", summary="X-Road listClients",
            responses={200: {"description": "clientList（默认 text/xml；Accept: application/json 时为 JSON）",
                             "content": {"text/xml": {"schema": {"type": "string"}},
                                         "application/json": {"schema": {"type": "object"}}}},
                       400: {"description": "X-Road fault (Client.*)",
                             "content": {"application/json": {"schema": {"type": "object"}}}}})
@router.get("/listClients", include_in_schema=False)
async def list_clients(request: Request, settings: AppSettings, db: AppDb, gate=state("exchange_gate")):
    instance = settings.xroad_instance
    try:
        await gate.forwarder.authenticate(request)
    except Problem as exc:
        return _render(exc, request)
    out = []
    if request.query_params.get("xRoadInstance", instance) == instance:
        async with db.session() as session:
            members = (await session.execute(select(Member).where(Member.status == "active")
                                             .order_by(Member.code))).scalars().all()
        for m in members:
            out.append({"id": {"object_type": "MEMBER", "xroad_instance": instance, "member_class": "GOV",
                               "member_code": xroad_code(m.code)}, "name": m.name})
        names = {xroad_code(m.code): m.name for m in members}
        for r in sorted(gate.policy.resources.values(), key=lambda r: (r.owner, r.xroad_subsystem)):
            sub = {"object_type": "SUBSYSTEM", "xroad_instance": instance, "member_class": r.xroad_member_class,
                   "member_code": r.xroad_member_code, "subsystem_code": r.xroad_subsystem}
            if not any(o["id"] == sub for o in out):
                out.append({"id": sub, "name": names.get(r.xroad_member_code, r.owner),
                            "subsystem_name": r.xroad_subsystem})
    accept = (request.headers.get("accept") or "").lower()
    if "application/json" in accept:
        return JSONResponse({"member": out}, media_type="application/json; charset=utf-8")
    return Response(meta.client_list_xml(out), media_type="text/xml; charset=utf-8")


@router.api_route("/r1", methods=ALL_METHODS, include_in_schema=False)
@router.api_route("/r1/{rest:path}", methods=ALL_METHODS, include_in_schema=False)
async def xroad(request: Request, settings: AppSettings, gate=state("exchange_gate"),
                aggregate=state("openapi_aggregate")):
    own_instance = settings.xroad_instance
    started, at = time.perf_counter(), gate.clock.now()
    call = await Call.of(request, request.url.path)
    xroad_id = request.headers.get("x-road-id") or str(uuid.uuid4())
    try:
        ids, rest = parse_service_path(_raw_path(request))
    except XRoadFault as f:  # not a call of the protocol: answered, not an exchange
        return _stamped(_render(f, request), request, call, "", xroad_id)
    service_id = "/".join(ids)
    is_meta = ids[4] in METADATA and not rest
    if is_meta and request.method == "GET" and ids[0] == own_instance:
        try:  # metadata services: not exchanges, not logged
            resp = await _metadata(request, gate, aggregate, own_instance, ids)
        except Problem as exc:
            resp = _render(exc, request)
        return _stamped(resp, request, call, service_id, xroad_id)
    res = next((r for r in _provider(gate.policy, ids[1], ids[2], ids[3]) if r.xroad_service == ids[4]),
               None) if ids[0] == own_instance else None
    if res is None:  # nothing to forward to: refused, and logged unless it asked for a metadata service
        what = f"X-Road instance {ids[0]}" if ids[0] != own_instance else f"service {service_id}"
        resp = _render(XRoadFault("Server.ServerProxy.UnknownService", f"Unknown {what}"), request)
        if not is_meta:
            gate.record(call, at, started, resp)
        return _stamped(resp, request, call, service_id, xroad_id)
    call.path = res.path_prefix.rstrip("/") + ("/" + rest if rest else "")

    def check(principal) -> None:
        _same_member(request, own_instance, principal.member)

    resp = await gate.exchange(call, res.service, check=check, refuse=lambda exc, _call: _render(exc, request),
                               extra_headers=[("x-onenet-resource", res.code), ("x-road-id", xroad_id)])
    for h in ORIGIN_LEAKING:
        if h in resp.headers:
            del resp.headers[h]
    return _stamped(resp, request, call, service_id, xroad_id)


def _stamped(resp: Response, request: Request, call: Call, service_id: str, xroad_id: str) -> Response:
    resp.headers["X-Road-Client"] = last_client_header(request.scope["headers"])
    resp.headers["X-Road-Service"] = service_id
    resp.headers["X-Road-Id"] = xroad_id
    resp.headers["X-Road-Request-Id"] = request_id_var.get() or ""
    resp.headers["X-Road-Request-Hash"] = request_hash(request.method, _raw_path(request), call.query,
                                                       request.scope["headers"], call.body)
    return resp
