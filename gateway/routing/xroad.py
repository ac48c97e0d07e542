"""X-Road REST compatibility (message protocol for REST 1.0) for department systems that already speak it.

`/r1/{instance}/{memberClass}/{memberCode}/{subsystemCode}/{serviceCode}/{path}` is mapped onto the catalogue
entry with that owner, X-Road member class, subsystem and service code, and forwarded to `{path_prefix}/{path}`
with the same token, grant, masking, rate-limit and message-log treatment as any other exchange.

The `X-Road-Client` header (`{instance}/{memberClass}/{memberCode}[/{subsystemCode}]`) is required and must
name the member the bearer token belongs to. `X-Road-Id` (generated when absent), `X-Road-UserId` and
`X-Road-Issue` are accepted (the user is logged beside the calling system's own user; the issue is logged as
the purpose when `X-OneNet-Purpose` is absent). Responses
carry `X-Road-Client`, `X-Road-Service`, `X-Road-Id`, `X-Road-Request-Id` and `X-Road-Request-Hash`
(base64 SHA-512 of the request body). Faults carry `X-Road-Error` (`Client.*` / `Server.*`) and the body
`{type, message, detail}` (detail: the request id).

Metadata services: `GET /r1/listClients` (also `/listClients`), and per provider subsystem
`GET /r1/{instance}/{class}/{member}/{subsystem}/listMethods`, `…/allowedMethods`,
`…/getOpenAPI?serviceCode=…`.
"""
from __future__ import annotations

import base64
import hashlib
import time
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.responses import Response

from common.context import request_id_var
from common.errors import Problem
from gateway.members.models import Member
from gateway.routing.gate import Call

router = APIRouter(tags=["x-road X-Road REST 兼容"])

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
META = {"listMethods", "allowedMethods", "getOpenAPI"}
ORIGIN_LEAKING = {"x-onenet-service", "server", "x-powered-by", "via"}

# problem code → X-Road fault type
FAULTS = {
    "unauthenticated": "Client.Unauthenticated", "invalid_token": "Client.InvalidToken",
    "member_revoked": "Client.MemberRevoked", "exchange.no_grant": "Client.AccessDenied",
    "exchange.not_shared": "Client.AccessDenied", "exchange.not_catalogued": "Server.ServerProxy.UnknownService",
    "rate_limited": "Client.TooManyRequests", "upstream_unavailable": "Server.ServerProxy.ServiceFailed",
    "upstream_timeout": "Server.ServerProxy.ServiceTimeout", "exchange.audit_backlog": "Server.ServerProxy.Busy",
}


class XRoadFault(Problem):
    """A refusal in X-Road's terms (a `Problem`, so the exchange's core refuses and logs it like any other)."""

    def __init__(self, status: int, fault: str, message: str) -> None:
        super().__init__(status, "xroad.fault", message)
        self.fault, self.message = fault, message


def _fault_response(status: int, fault: str, message: str, headers: dict | None = None) -> JSONResponse:
    rid = request_id_var.get() or ""
    return JSONResponse({"type": fault, "message": message, "detail": rid}, status_code=status,
                        headers={"X-Road-Error": fault, **(headers or {})})


def _from_problem(exc: Problem) -> JSONResponse:
    fault = FAULTS.get(exc.code) or ("Server.ServerProxy.InternalError" if exc.status >= 500 else "Client.BadRequest")
    detail = exc.detail[1] if isinstance(exc.detail, tuple) else (exc.detail or exc.code)
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "retry-after"}
    return _fault_response(exc.status, fault, detail, headers)


def _client_id(request: Request, instance: str) -> list[str]:
    raw = request.headers.get("x-road-client")
    if not raw:
        raise XRoadFault(400, "Client.BadRequest", "X-Road-Client header is required (X-Road-Client 必填)")
    parts = raw.split("/")
    if len(parts) not in (3, 4) or not all(parts):
        raise XRoadFault(400, "Client.BadRequest",
                         "X-Road-Client must be {instance}/{memberClass}/{memberCode}[/{subsystemCode}]")
    if parts[0] != instance:
        raise XRoadFault(400, "Client.BadRequest", f"Unknown X-Road instance {parts[0]}")
    return parts


def _find(policy, member_class: str, member_code: str, subsystem: str, service_code: str):
    for r in policy.resources.values():
        if (r.owner, r.xroad_member_class, r.xroad_subsystem, r.xroad_service) == (
                member_code, member_class, subsystem, service_code):
            return r
    return None


def _service_id(instance: str, r) -> dict:
    return {"object_type": "SERVICE", "xroad_instance": instance, "member_class": r.xroad_member_class,
            "member_code": r.owner, "subsystem_code": r.xroad_subsystem, "service_code": r.xroad_service}


async def _metadata(request: Request, instance: str, member_class: str, member_code: str, subsystem: str,
                    method: str) -> Response:
    gate = request.app.state.exchange_gate
    principal = await gate.forwarder.authenticate(request)
    client = _client_id(request, instance)
    if client[2] != principal.member:
        raise XRoadFault(403, "Client.Unauthorized", "X-Road-Client does not match the token's member")
    services = sorted((r for r in gate.policy.resources.values()
                       if (r.owner, r.xroad_member_class, r.xroad_subsystem) == (member_code, member_class, subsystem)),
                      key=lambda r: r.xroad_service)
    if method == "listMethods":
        return JSONResponse({"service": [_service_id(instance, r) for r in services]})
    if method == "allowedMethods":
        now = gate.clock.now()
        allowed = [r for r in services if r.owner == principal.member or (
            r.sharing_class != "not_shared" and (g := gate.policy.grants.get((principal.member, r.code)))
            is not None and g.live(now))]
        return JSONResponse({"service": [_service_id(instance, r) for r in allowed]})
    code = request.query_params.get("serviceCode")
    res = next((r for r in services if r.xroad_service == code), None)
    if res is None:
        raise XRoadFault(404, "Server.ServerProxy.UnknownService", f"Unknown service code {code!r}")
    app = request.app
    doc = await app.state.openapi_aggregate.document(app.openapi())
    prefix = res.path_prefix.rstrip("/")
    paths = {p: v for p, v in doc.get("paths", {}).items() if p == prefix or p.startswith(prefix + "/")}
    return JSONResponse({"openapi": doc.get("openapi", "3.1.0"),
                         "info": {"title": res.name, "version": "1", "description": res.code},
                         "paths": paths, "components": doc.get("components", {})})


@router.get("/r1/listClients", summary="X-Road listClients")
@router.get("/listClients", include_in_schema=False)
async def list_clients(request: Request):
    instance = request.app.state.settings.xroad_instance
    try:
        await request.app.state.exchange_gate.forwarder.authenticate(request)
    except Problem as exc:
        return _from_problem(exc)
    async with request.app.state.db.session() as session:
        members = (await session.execute(select(Member).where(Member.status == "active").order_by(Member.code))
                   ).scalars().all()
    out = []
    for m in members:
        out.append({"id": {"object_type": "MEMBER", "xroad_instance": instance, "member_class": "GOV",
                           "member_code": m.code}, "name": m.name})
    for r in sorted(request.app.state.exchange_policy.resources.values(), key=lambda r: (r.owner, r.xroad_subsystem)):
        sub = {"object_type": "SUBSYSTEM", "xroad_instance": instance, "member_class": r.xroad_member_class,
               "member_code": r.owner, "subsystem_code": r.xroad_subsystem}
        if not any(o["id"] == sub for o in out):
            out.append({"id": sub, "name": r.owner})
    return JSONResponse({"member": out})


@router.api_route("/r1/{instance}/{member_class}/{member_code}/{subsystem}/{service_code}", methods=METHODS,
                  include_in_schema=False)
@router.api_route("/r1/{instance}/{member_class}/{member_code}/{subsystem}/{service_code}/{rest:path}",
                  methods=METHODS, include_in_schema=False)
async def xroad(request: Request, instance: str, member_class: str, member_code: str, subsystem: str,
                service_code: str, rest: str = ""):
    gate = request.app.state.exchange_gate
    own_instance = request.app.state.settings.xroad_instance
    started, at = time.perf_counter(), gate.clock.now()
    call = await Call.of(request, request.url.path)
    xroad_id = request.headers.get("x-road-id") or str(uuid.uuid4())
    service_id = f"{instance}/{member_class}/{member_code}/{subsystem}/{service_code}"
    meta = service_code in META and not rest
    if meta and request.method == "GET" and instance == own_instance:
        try:  # metadata services: not exchanges, not logged
            resp = await _metadata(request, instance, member_class, member_code, subsystem, service_code)
        except XRoadFault as f:
            resp = _fault_response(f.status, f.fault, f.message)
        except Problem as exc:
            resp = _from_problem(exc)
        return _stamped(resp, request, service_id, xroad_id, call.body)
    res = _find(gate.policy, member_class, member_code, subsystem, service_code) if instance == own_instance else None
    if res is None:  # nothing to forward to: refused, and logged unless it asked for a metadata service
        what = f"X-Road instance {instance}" if instance != own_instance else f"service {service_id}"
        resp = _fault_response(404, "Server.ServerProxy.UnknownService", f"Unknown {what}")
        if not meta:
            gate.record(call, at, started, resp)
        return _stamped(resp, request, service_id, xroad_id, call.body)
    call.path = res.path_prefix.rstrip("/") + ("/" + rest if rest else "")

    def check(principal) -> None:
        client = _client_id(request, own_instance)
        if client[2] != principal.member:
            raise XRoadFault(403, "Client.Unauthorized", "X-Road-Client does not match the token's member")

    resp = await gate.exchange(call, res.service, check=check, refuse=_refusal,
                               extra_headers=[("x-onenet-resource", res.code), ("x-road-id", xroad_id)])
    for h in ORIGIN_LEAKING:
        if h in resp.headers:
            del resp.headers[h]
    return _stamped(resp, request, service_id, xroad_id, call.body)


def _refusal(exc: Problem, call: Call) -> Response:
    if isinstance(exc, XRoadFault):
        return _fault_response(exc.status, exc.fault, exc.message)
    return _from_problem(exc)


def _stamped(resp: Response, request: Request, service_id: str, xroad_id: str, body: bytes) -> Response:
    resp.headers["X-Road-Client"] = request.headers.get("x-road-client", "")
    resp.headers["X-Road-Service"] = service_id
    resp.headers["X-Road-Id"] = xroad_id
    resp.headers["X-Road-Request-Id"] = request_id_var.get() or ""
    resp.headers["X-Road-Request-Hash"] = base64.b64encode(hashlib.sha512(body).digest()).decode()
    return resp
