"""The two calls the edge makes to the gateway: what to do with a caller's calls to a scope, and here are the
message-log records of the calls it answered. Both need the edge's secret (`ONENET_EDGE_SECRET`); neither is in
the public API documents.
"""
from __future__ import annotations

import hmac
import logging
from datetime import datetime, timezone

import orjson
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from common.deps import AppClock
from common.errors import Problem
from gateway.deps import Audit, Edge, EdgeTelemetry, Forwarding, Issuer, Policy
from gateway.edge.link import SECRET_HEADER, EdgeLink, scope_for
from gateway.routing.gate import exchange_record
from gateway.routing.router import FORWARD_ROUTE

router = APIRouter(prefix="/exchange/internal/edge", include_in_schema=False)
log = logging.getLogger("onenet.gateway.edge")

# A decision for a caller the gateway answers itself (refused, masked, pinned) is kept this long at most.
GATEWAY_DECISION_SECONDS = 60.0


def _edge(request: Request, edge: Edge) -> EdgeLink:
    """The app's edge link, for a call carrying the edge's secret."""
    if edge is None:
        raise Problem(404, "not_found", ("未配置网关边缘节点", "No edge is configured"))
    sent = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(sent.encode(), edge.secret.encode()):
        raise Problem(403, "forbidden", ("边缘节点密钥不正确", "Wrong edge secret"))
    return edge


TheEdge = Annotated[EdgeLink, Depends(_edge)]


@router.post("/decide")
async def decide(request: Request, edge: TheEdge, clock: AppClock, forwarder: Forwarding, policy: Policy,
                 issuer: Issuer) -> Response:
    """{authorization, method, path, service} → {mode: "edge" | "gateway", generation, scope, ttl, ...}.

    "edge": the edge may forward this caller's calls to this scope itself for `ttl` seconds (until the token's
    expiry or the grant's, whichever is first; relative, so the two clocks need not agree) while the generation
    stands. "gateway": send them here (the gateway refuses, masks or checks the client certificate as always)."""
    generation = edge.generation  # read first: a change while deciding makes this decision stale at once
    try:
        call = _loads(await request.body())
        path, service = str(call["path"]), str(call["service"])
    except (ValueError, TypeError, KeyError):
        raise Problem(400, "bad_request", ("边缘节点的决定请求格式不正确", "Malformed decision request")) from None
    now = clock.now()
    answer = {"generation": generation, "scope": scope_for(path, edge.scopes), "mode": "gateway",
              "ttl": GATEWAY_DECISION_SECONDS}
    if forwarder.pins.pins or service not in forwarder.upstreams or service not in edge.services:
        return _json(answer)
    try:
        principal = await forwarder.principal_for(call.get("authorization"))
        res, grant = policy.check(member=principal.member, user=principal.user, path=path, now=now)
    except Problem:
        return _json(answer)  # refused: the gateway answers (and logs) it
    if grant is not None and grant.actions:
        return _json(answer)  # the response must be masked to the grant: the gateway does that
    exp = principal.claims.get("exp")
    ttl = float(exp) - issuer.clock.timestamp() if isinstance(exp, (int, float)) else GATEWAY_DECISION_SECONDS
    if grant is not None and grant.expires_at is not None:
        ttl = min(ttl, (grant.expires_at - now).total_seconds())
    answer.update(mode="edge", ttl=ttl, member=principal.member, user=principal.user,
                  resource=res.code if res else "", owner=res.owner if res else "")
    return _json(answer)


@router.post("/log", status_code=204)
async def log_records(request: Request, edge: TheEdge, audit: Audit, telemetry: EdgeTelemetry) -> Response:
    """Newline-separated JSON arrays, one per call the edge answered: [started (epoch s), member, user,
    resource, owner, purpose, X-Road-UserId, method, path, status, latency ms, request id, request hash,
    response hash]. Queued for the message log like the gateway's own records; 503 while the log cannot take
    more (the edge keeps them and sends them again)."""
    if not audit.accepting():
        raise Problem(503, "exchange.audit_backlog", ("交换日志暂时无法写入", "The message log is behind"),
                      headers={"Retry-After": "1"})
    records = []
    for line in (await request.body()).split(b"\n"):
        if not line.strip():
            continue
        try:
            (started, member, user, resource, owner, purpose, xroad_user, method, path, status, latency_ms,
             request_id, request_hash, response_hash) = _loads(line)
        except (ValueError, TypeError):
            # not one of ours: the rest of the batch is still logged (held back, it would hold back them all)
            log.error("edge: a message-log record that cannot be read was left out: %r", line[:500])
            continue
        records.append(exchange_record(
            at=datetime.fromtimestamp(started, timezone.utc), member=member, user=user, xroad_user=xroad_user,
            resource=resource or None, owner=owner or None, purpose=purpose, method=method, path=path,
            status=int(status), latency_ms=float(latency_ms), request_id=request_id or None,
            request_hash=request_hash, response_hash=response_hash))
    audit.record_many(records)
    telemetry.count_many(
        FORWARD_ROUTE, [(ex.method, ex.status, ex.latency_ms / 1000) for ex in records])
    return Response(status_code=204)


def _loads(data: bytes):
    """JSON from the edge, whose strings carry what callers sent (a path or header that is not UTF-8): such
    bytes are read as U+FFFD, as the gateway reads them in a path."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return orjson.loads(data.decode("utf-8", "replace"))


def _json(doc: dict) -> Response:
    return Response(orjson.dumps(doc), media_type="application/json")
