"""One exchange through the gateway: authenticate (one token verify), rate-limit, check the grant (in memory),
forward, mask the response to the grant, and queue the message-log record (written off the hot path).

A refused call is answered and logged like any other.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from common.auth import Principal
from common.clock import Clock
from common.context import request_id_var
from common.errors import Problem, problem_response, request_language
from common.ids import new_id
from gateway.exchange.audit import AuditWriter, Exchange
from gateway.exchange.policy import ExchangePolicy, ResourceView
from gateway.routing.forwarder import Forwarder, local_path

# The purpose of the call, UTF-8 percent-encoded (HTTP header values are ASCII): `%E5%85%BB%E8%80%81…`.
PURPOSE_HEADER = "x-onenet-purpose"
PURPOSE_B = PURPOSE_HEADER.encode()


class ExchangeGate:
    def __init__(self, forwarder: Forwarder, policy: ExchangePolicy, audit: AuditWriter, clock: Clock,
                 limiter=None) -> None:
        self.forwarder = forwarder
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.limiter = limiter

    async def admit(self, request: Request, path: str) -> tuple[Principal, ResourceView | None, tuple]:
        """Everything before the upstream call; raises Problem when the call is refused."""
        principal = await self.authenticate(request)
        res, actions = await self.authorize(request, principal, path)
        return principal, res, actions

    async def authenticate(self, request: Request) -> Principal:
        if not await self.audit.admit():
            raise audit_backlog_problem()
        principal = await self.forwarder.authenticate(request)
        request.state.exchange_principal = principal
        return principal

    async def authorize(self, request: Request, principal: Principal, path: str) -> tuple[ResourceView | None, tuple]:
        if self.limiter is not None:
            await self.limiter.check(principal)
        res, grant = self.policy.check(member=principal.member, user=principal.user, path=path,
                                       now=self.clock.now())
        request.state.exchange_resource = res
        return res, grant.actions if grant is not None else ()

    async def handle(self, request: Request, service: str, path: str | None = None) -> Response:
        scope = request.scope
        path = path or local_path(scope)
        started = time.perf_counter()
        at = self.clock.now()
        body = await request.body()
        try:
            principal, res, actions = await self.admit(request, path)
            extra = [("x-onenet-resource", res.code)] if res is not None else None
            resp = await self.forwarder.forward(request, service, principal, path=path, actions=actions,
                                                body=body, extra_headers=extra)
        except Problem as exc:
            resp = self.refusal(exc, request_language(request), scope["path"])
        self.log(request, path, at, started, body, resp)
        return resp

    async def exchange(self, call: Call, service: str) -> tuple[Response, Principal | None]:
        """`handle` for a call the data plane read off the socket (`gateway.routing.dataplane`): the same checks,
        forward, masking and message-log record, without a Starlette request around it."""
        started = time.perf_counter()
        at = self.clock.now()
        principal = res = None
        try:
            if not await self.audit.admit():
                raise audit_backlog_problem()
            principal = await self.forwarder.principal_for(call.header(b"authorization"))
            if self.limiter is not None:
                await self.limiter.check(principal)
            res, grant = self.policy.check(member=principal.member, user=principal.user, path=call.path, now=at)
            extra = [("x-onenet-resource", res.code)] if res is not None else None
            resp = await self.forwarder.forward_call(
                service, principal, method=call.method, path=call.path, query=call.query, headers=call.headers,
                client=call.client, body=call.body, actions=grant.actions if grant is not None else (),
                extra_headers=extra)
        except Problem as exc:
            resp = self.refusal(exc, call.lang, call.path)
        self.record(principal, res, call.path, call.method, call.header(PURPOSE_B) or call.header(b"x-road-issue"),
                    call.header(b"x-road-userid"), at, started, call.body, resp)
        return resp, principal

    @staticmethod
    def refusal(exc: Problem, lang: str, instance: str) -> Response:
        return problem_response(exc.status, exc.code, lang=lang, detail=exc.detail, title=exc.title,
                                errors=exc.errors, instance=instance, headers=exc.headers, extra=exc.extra)

    def log(self, request: Request, path: str, at, started: float, body: bytes, resp: Response) -> None:
        headers = request.headers
        self.record(getattr(request.state, "exchange_principal", None),
                    getattr(request.state, "exchange_resource", None), path, request.method,
                    headers.get(PURPOSE_HEADER) or headers.get("x-road-issue"), headers.get("x-road-userid"),
                    at, started, body, resp)

    def record(self, principal: Principal | None, res: ResourceView | None, path: str, method: str,
               purpose: str | None, xroad_user: str | None, at, started: float, body: bytes,
               resp: Response) -> None:
        """Queue the message-log record of one exchange (written off the request path)."""
        if res is None:
            res = self.policy.resolve(path)
        self.audit.record(exchange_record(
            at=at, member=principal.member if principal else "-", user=principal.user if principal else "-",
            xroad_user=xroad_user, resource=res.code if res else None, owner=res.owner if res else None,
            purpose=purpose, method=method, path=path, status=resp.status_code,
            latency_ms=(time.perf_counter() - started) * 1000, request_id=request_id_var.get() or None,
            request_hash=hashlib.sha256(body).hexdigest(), response_hash=hashlib.sha256(bytes(resp.body)).hexdigest()))


def exchange_record(*, at, member: str, user: str, xroad_user: str | None, resource: str | None, owner: str | None,
                    purpose: str | None, method: str, path: str, status: int, latency_ms: float,
                    request_id: str | None, request_hash: str, response_hash: str) -> Exchange:
    """One message-log record, as the gateway and its edge (gateway.edge.router) both make them: the purpose and
    X-Road-UserId headers percent-decoded, the person an X-Road client names appended to its user."""
    if purpose:
        purpose = unquote(purpose, errors="replace")
    # An X-Road client names the person behind its system's call in X-Road-UserId: that is the user to log.
    if xroad_user and member != "-":
        user = f"{user} / {unquote(xroad_user, errors='replace')}"
    # positional: a NamedTuple made by keywords costs several times more, at every call the edge logs
    return Exchange(new_id(), at, member, user[:64], resource, owner, purpose[:500] if purpose else None, method,
                    path, status, latency_ms, request_id[:64] if request_id else None, request_hash, response_hash)


@dataclass(slots=True)
class Call:
    """One forwarded call as the data plane parsed it: the decoded path below the gateway's root path, raw query,
    raw request headers (names lower-case, as uvicorn gives them), the client's address, the whole body, the
    answer's language."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    body: bytes = b""
    lang: str = "zh"

    def header(self, name: bytes) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None


def audit_backlog_problem() -> Problem:
    return Problem(503, "exchange.audit_backlog", ("交换日志暂时无法写入，为保证全程留痕暂停转发，请稍后重试",
                                                  "The message log is behind; retry later"),
                   headers={"Retry-After": "5"})
