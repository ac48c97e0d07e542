from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from common.auth import Principal
from common.errors import Problem
from gateway.deps import Gate, OpenAPIDocs
from gateway.routing import open311
from gateway.routing.gate import Call

router = APIRouter()

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
FORWARD_ROUTE = "/{service}/{rest:path}"  # also the metrics label of the calls the edge answered
# 公示: published notices are read without signing in (kiosks, the app's public pages; ADR 0018)
PUBLIC_READS = (("services", "v1/public/"),)


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, docs: OpenAPIDocs) -> JSONResponse:
    return JSONResponse(await docs.document(request.app.openapi()))


@router.api_route(FORWARD_ROUTE, methods=METHODS, include_in_schema=False)
async def forward(service: str, rest: str, request: Request, gate: Gate):
    if service not in gate.forwarder.upstreams:
        raise Problem(404, "not_found", ("没有这个接口", "No such endpoint"))
    if service == open311.SERVICE:  # GeoReport v2: anonymous public reads, api_key on POST
        return await open311.handle(gate, request)
    if request.method in open311.PUBLIC_METHODS and "authorization" not in request.headers and \
            any(service == s and rest.startswith(p) for s, p in PUBLIC_READS):
        host = request.client.host if request.client else "-"

        async def anonymous(call: Call) -> Principal:  # rate-limited per address, logged, no grant
            return Principal(member="anonymous", user=f"anonymous:{host}", role="anonymous")
        return await gate.exchange(await Call.of(request), service, identify=anonymous, grant=False)
    return await gate.exchange(await Call.of(request), service)
