"""The exchange's decision core: every call the gateway forwards to a service passes one sequence, in
`ExchangeGate.exchange`:

    admit (message-log backpressure, who is calling) → rate limit → grant → forward → record

whichever entry it came by: the forward route (`gateway.routing.router`), Open311 (`routing.open311`: the
caller named by `api_key`, or anonymous reads without a grant check) and X-Road (`routing.xroad`: its client
header checked against the token, its faults as refusals). An entry says only how it differs (`identify`,
`check`, `grant`, `refuse`). A refused call is answered and logged like any other. The edge (nginx, ADR 0012)
answers plain calls on this gateway's decisions (`gateway.edge.router.decide` runs the same admit and grant
steps) and hands its records to `exchange_record`.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
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
from common.storage.uploads import upload_limit
from gateway.routing.forwarder import Forwarder, StreamedBody, local_path
from gateway.routing.streams import PassedStream

# The purpose of the call, UTF-8 percent-encoded (HTTP header values are ASCII): `%E5%85%BB%E8%80%81…`.
PURPOSE_HEADER = b"x-onenet-purpose"
RESOURCE_HEADER = "x-onenet-resource"


@dataclass(slots=True)
class Call:
    """One call to forward: the decoded path below the gateway's root path (what is checked, forwarded and
    logged), the raw query and headers, the client's address, the whole body (a file upload's as a stream,
    `StreamedBody`, never held whole), the answer's language, and the request it came as (the metrics pages'
    cookie and client certificates are read from it)."""

    request: Request
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    body: bytes | StreamedBody
    lang: str

    @classmethod
    async def of(cls, request: Request, path: str | None = None, *, body: bytes | None = None) -> Call:
        """`body`: the body the caller read already (whole), forwarded as it is."""
        scope = request.scope
        path = path or local_path(scope)
        forwarded: bytes | StreamedBody
        if body is not None:
            forwarded = body
        elif upload_limit(scope["method"], path) is not None:
            length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
            forwarded = StreamedBody(request.stream(), length)
        else:
            forwarded = await request.body()
        return cls(request=request, method=scope["method"], path=path, query=scope.get("query_string", b""),
                   headers=scope["headers"], client=scope.get("client"), body=forwarded,
                   lang=request_language(request))

    def body_hash(self) -> str:
        return self.body.hexdigest() if isinstance(self.body, StreamedBody) else hashlib.sha256(self.body).hexdigest()

    @property
    def instance(self) -> str:
        """The path the caller asked for (a problem's `instance`)."""
        return self.request.scope["path"]

    def header(self, name: bytes) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None


Refuse = Callable[[Problem, Call], Response]


class ExchangeGate:
    def __init__(self, forwarder: Forwarder, policy: ExchangePolicy, audit: AuditWriter, clock: Clock,
                 limiter=None) -> None:
        self.forwarder = forwarder
        self.policy = policy
        self.audit = audit
        self.clock = clock
        self.limiter = limiter

    async def exchange(self, call: Call, service: str, *,
                       identify: Callable[[Call], Awaitable[Principal]] | None = None,
                       check: Callable[[Principal], None] | None = None, grant: bool = True,
                       extra_headers: list[tuple[str, str]] | None = None,
                       refuse: Refuse | None = None) -> Response:
        """Admit, limit, check the grant, forward and record one call; a `Problem` on the way is the refusal
        (`refuse` renders it, problem+json by default). `identify` names the caller (default: the bearer token,
        or the metrics pages' cookie, and the member's pinned certificate); `check` runs on the caller before
        the limits; `grant=False` forwards without a grant (Open311's anonymous reads of public documents)."""
        started = time.perf_counter()
        at = self.clock.now()
        principal = res = None
        try:
            principal = await self.admit(call, identify)
            if check is not None:
                check(principal)
            await self.limit(principal)
            actions: tuple = ()
            if grant:
                res, actions = self.authorize(principal, call.path)
            extra = list(extra_headers or ())
            if res is not None and not any(k == RESOURCE_HEADER for k, _ in extra):
                extra.append((RESOURCE_HEADER, res.code))
            resp = await self.forwarder.forward(
                service, principal, method=call.method, path=call.path, query=call.query, headers=call.headers,
                client=call.client, body=call.body, actions=actions, extra_headers=extra)
        except Problem as exc:
            resp = (refuse or self.refusal)(exc, call)
        if isinstance(resp, PassedStream):  # recorded when it ends, with the hash of all it passed
            resp.done = lambda digest: self.record(call, at, started, resp, principal, res, response_hash=digest)
        else:
            self.record(call, at, started, resp, principal, res)
        return resp

    # the steps, each also used alone (X-Road's metadata services, the edge's decisions)

    async def admit(self, call: Call, identify: Callable[[Call], Awaitable[Principal]] | None = None) -> Principal:
        """Refused while the message log cannot take more; then who is calling."""
        if not await self.audit.admit():
            raise audit_backlog_problem()
        if identify is not None:
            return await identify(call)
        return await self.forwarder.authenticate(call.request)

    async def limit(self, principal: Principal) -> None:
        if self.limiter is not None:
            await self.limiter.check(principal)

    def authorize(self, principal: Principal, path: str) -> tuple[ResourceView | None, tuple]:
        """The catalogued resource and the masking actions of the caller's grant; raises when there is none."""
        res, grant = self.policy.check(member=principal.member, user=principal.user, path=path, now=self.clock.now())
        return res, grant.actions if grant is not None else ()

    @staticmethod
    def refusal(exc: Problem, call: Call) -> Response:
        return problem_response(exc.status, exc.code, lang=call.lang, detail=exc.detail, title=exc.title,
                                errors=exc.errors, instance=call.instance, headers=exc.headers, extra=exc.extra)

    def record(self, call: Call, at, started: float, resp: Response, principal: Principal | None = None,
               res: ResourceView | None = None, response_hash: str | None = None) -> None:
        """Queue the message-log record of one exchange (written off the request path)."""
        if res is None:
            res = self.policy.resolve(call.path)
        self.audit.record(exchange_record(
            at=at, member=principal.member if principal else "-", user=principal.user if principal else "-",
            xroad_user=call.header(b"x-road-userid"), resource=res.code if res else None,
            owner=res.owner if res else None,
            purpose=call.header(PURPOSE_HEADER) or call.header(b"x-road-issue"), method=call.method,
            path=call.path, status=resp.status_code, latency_ms=(time.perf_counter() - started) * 1000,
            request_id=request_id_var.get() or None, request_hash=call.body_hash(),
            response_hash=response_hash or hashlib.sha256(bytes(resp.body)).hexdigest()))


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


def audit_backlog_problem() -> Problem:
    return Problem(503, "exchange.audit_backlog", ("交换日志暂时无法写入，为保证全程留痕暂停转发，请稍后重试",
                                                  "The message log is behind; retry later"),
                   headers={"Retry-After": "5"})
