"""The gateway's side of its edge: the state it pushes (generation, scopes, problems) and when it pushes it.

The edge caches one decision per token and scope and keeps it while its generation is the pushed one. The
gateway pushes a new generation before it answers any change that can narrow what a caller may do (a grant
revoked or refused, a member revoked, a client certificate pinned) and after each periodic reload from the
database (what other replicas changed), so a revocation applies at the edge as at once as it does here.
"""
from __future__ import annotations

import logging
import time

import httpx
import orjson

from common.errors import problem_body
from gateway.exchange.policy import ExchangePolicy
from gateway.ratelimit import MEMBER_DETAIL, USER_DETAIL, limited_problem
from gateway.routing.gate import audit_backlog_problem
from gateway.routing.forwarder import timed_out_problem, unavailable_problem

log = logging.getLogger("onenet.gateway.edge")

SECRET_HEADER = "x-onenet-edge-secret"


def edge_scopes(policy: ExchangePolicy, services: list[str]) -> list[list[str]]:
    """Path prefixes and the scope a decision is cached under, longest first (as the policy resolves): one per
    catalogued resource, then one per upstream; department routes outside `/departments/v1` have a scope of
    their own, as the policy treats them apart (an uncatalogued one is refused)."""
    scopes = [[res.path_prefix, f"r:{code}"] for code, res in policy.resources.items()]
    for name in services:
        scopes.append([f"/{name}/", f"u:{name}"])
    if "departments" in services:
        scopes.append(["/departments/v1", "u:departments/v1"])
    scopes.sort(key=lambda s: -len(s[0]))
    return scopes


def scope_for(path: str, scopes: list[list[str]]) -> str | None:
    for prefix, scope in scopes:
        if path.startswith(prefix):
            return scope
    return None


def edge_problems(services: list[str]) -> dict[str, dict[str, dict]]:
    """The problems the edge answers itself, rendered here in both languages (it fills in the request id, the
    path and, where `{seconds}` stands, the wait)."""
    def both(problem) -> dict[str, dict]:
        out = {}
        for lang in ("zh", "en"):
            body = problem_body(problem.status, problem.code, lang=lang, detail=problem.detail, title=problem.title,
                                extra=problem.extra)
            body.pop("request_id", None)
            out[lang] = body
        return out

    problems = {"rate_limited_user": both(limited_problem("{seconds}", USER_DETAIL)),
                "rate_limited_member": both(limited_problem("{seconds}", MEMBER_DETAIL)),
                "audit_backlog": both(audit_backlog_problem())}
    for name in services:
        problems[f"upstream_unavailable:{name}"] = both(unavailable_problem(name))
        problems[f"upstream_timeout:{name}"] = both(timed_out_problem(name))
    return problems


class EdgeLink:
    def __init__(self, control_url: str, secret: str, policy: ExchangePolicy, services: list[str]) -> None:
        self.control_url = control_url
        self.secret = secret
        self.policy = policy
        self.services = services
        # Above whatever a previous run of this gateway pushed: the edge must not keep decisions across a restart.
        self.generation = time.time_ns() // 1000
        self.scopes = edge_scopes(policy, services)
        self.problems = edge_problems(services)
        self.pushed: int | None = None
        self.revoked: set[str] = set()
        self.pins = None
        self.fingerprint = self._fingerprint()
        self.client = httpx.AsyncClient(timeout=2.0)

    async def changed(self) -> None:
        """Something a cached decision depends on changed: invalidate them all at the edge before answering."""
        self.generation += 1
        self.scopes = edge_scopes(self.policy, self.services)
        self.fingerprint = self._fingerprint()
        await self.push()

    async def reloaded(self, revoked: set[str], pins) -> None:
        """After the periodic reload from the database: a new generation if what was read differs from what the
        edge's decisions were made on (another replica revoked something), else the same one pushed again (an edge
        that restarted gets its state back; one that hears nothing for `stale_after` seconds stops deciding)."""
        self.revoked, self.pins = revoked, pins
        if self._fingerprint() != self.fingerprint:
            await self.changed()
        else:
            await self.push()

    def _fingerprint(self) -> int:
        grants = sorted((k, g.id, tuple(sorted(g.fields)) if g.fields is not None else None, g.expires_at)
                        for k, g in self.policy.grants.items())
        resources = sorted((r.code, r.path_prefix, r.sharing_class, r.owner, len(r.fields))
                           for r in self.policy.resources.values())
        pins = sorted(self.pins.pins.items()) if self.pins is not None else ()
        return hash((tuple(grants), tuple(resources), tuple(sorted(self.revoked)), tuple(pins)))

    async def push(self) -> bool:
        generation = self.generation
        body = orjson.dumps({"generation": generation, "scopes": self.scopes, "problems": self.problems})
        for attempt in range(3):
            try:
                r = await self.client.put(self.control_url, content=body,
                                          headers={SECRET_HEADER: self.secret, "content-type": "application/json"})
                if r.status_code == 204:
                    self.pushed = generation
                    return True
                log.warning("edge refused the gateway's state: HTTP %s", r.status_code)
            except httpx.HTTPError as exc:
                if attempt == 2:
                    # the edge is not up (yet): until it has a state it sends every call here; once up, the
                    # next periodic push reaches it
                    log.warning("edge not reachable at %s: %r", self.control_url, exc)
        return False

    async def aclose(self) -> None:
        await self.client.aclose()


async def notify(edge: EdgeLink | None) -> None:
    """Tell the edge, if there is one, that what it was told may have changed (it asks again)."""
    if edge is not None:
        await edge.changed()


async def edge_changed(app) -> None:
    """`notify` for a caller holding the app (a background job)."""
    await notify(getattr(app.state, "edge", None))
