"""Dispatch recommendations from svc_matching (top candidates with their reasons), and what a dispatch records.

`candidates()` records the request as a need in svc_matching once (`matching_need_id`; the POST carries an
Idempotency-Key made from the request id, so a retry never makes two needs), asks for the top k candidates, and
keeps the answer on the request (`matching_candidates`). When svc_matching is down, slow, or refuses (for example
a grid event without a person), the answer says so — `available: false`, "dispatch manually" — and is kept too.

`choice.dispatch_choice()` runs inside the dispatch transition: `candidate_rank` picks the n-th kept candidate (its
reasons go into the timeline entry, `dispatch_mode: recommended`); otherwise the dispatch is manual (an explicit
`assignee`), and when the last answer of svc_matching was "unavailable" the timeline entry says so.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import update

from common.auth import Principal
from common.clock import Clock
from common.db import Database
from common.errors import Problem
from common.http_client import ServiceClient, UpstreamError
from svc_services.grids.models import ServiceGrid
from svc_services.requests.lifecycle import GRID, MANAGERS, OPEN
from svc_services.requests.models import ServiceRequest
from svc_services.requests.access import may_act
from svc_services.requests.service import get_request
from svc_services.settings import ServicesSettings

DISPATCHERS = MANAGERS + GRID
UNAVAILABLE = ("匹配服务暂不可用，请人工派单", "svc_matching is unavailable: dispatch manually")


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _detail(resp) -> str:
    try:
        body = resp.json()
        return str(body.get("detail") or body.get("code") or resp.status_code)
    except ValueError:
        return str(resp.status_code)


def _check(resp) -> Any:
    if resp.status_code >= 500:
        raise UpstreamError("svc_matching", f"HTTP {resp.status_code}")
    if resp.status_code >= 400:
        raise _Refused(resp.status_code, _detail(resp))
    return resp.json()


async def _need_id(client, req: ServiceRequest, grid: ServiceGrid | None) -> str:
    if req.matching_need_id:
        return req.matching_need_id
    lat = req.lat if req.lat is not None else (grid.lat if grid else None)
    long = req.long if req.long is not None else (grid.long if grid else None)
    if lat is None or long is None:
        raise _Refused(422, "诉求没有位置，无法匹配 / the request has no location to match on")
    body = {"category": req.category, "person_id": req.person_id, "priority": req.priority, "place_code": req.grid,
            "latitude": lat, "longitude": long, "source": "request", "source_ref": req.id}
    resp = await client.post("/matching/v1/needs", json=body,
                             headers={"Idempotency-Key": f"svc_services-request-{req.id}"})
    return _check(resp)["id"]


async def _organisation(client, kind: str, provider_id: str) -> str | None:
    """The organisation offering a matched service (provider accounts are scoped by organisation)."""
    if kind != "service":
        return None
    try:
        resp = await client.get(f"/matching/v1/services/{provider_id}")
    except UpstreamError:
        return None
    return resp.json().get("organization_id") if resp.status_code == 200 else None


async def matching_probe(client: ServiceClient, clock: Clock) -> dict[str, Any]:
    """Is svc_matching answering? Asked before a manual dispatch, so that the dispatch records that matching was
    down even when nobody asked for recommendations first. A cheap public read (HSDS metadata); an open circuit
    breaker answers at once without a call."""
    now = clock.now().isoformat()
    try:
        resp = await client.get("/matching/v1/hsds/")
    except UpstreamError:
        resp = None
    if resp is not None and resp.status_code < 500:
        return {"available": True, "at": now}
    return {"available": False, "at": now,
            "reason": {"code": "matching.unavailable", "zh": UNAVAILABLE[0], "en": UNAVAILABLE[1]}}


async def candidates(db: Database, settings: ServicesSettings, clock: Clock, client: ServiceClient,
                     principal: Principal, request_id: str, k: int | None) -> dict[str, Any]:
    async with db.session() as session:
        req = await get_request(session, principal, request_id)
        if principal.role not in DISPATCHERS or not may_act(principal, req, "dispatch"):
            raise Problem(403, "forbidden", ("只有派单人员可以查看推荐的服务方", "Only dispatchers see recommendations"))
        if req.state not in OPEN:
            raise Problem(409, "request.finished", ("诉求已结束，无需派单", "The request is finished"),
                          extra={"state": req.state})
        grid = await session.get(ServiceGrid, req.grid)
    k = k or settings.matching_candidates
    out: dict[str, Any] = {"request_id": req.id, "available": True, "dispatch": "recommended",
                           "need_id": req.matching_need_id, "candidates": [], "excluded": {}, "reason": None,
                           "fetched_at": clock.now().isoformat()}
    try:
        out["need_id"] = await _need_id(client, req, grid)
        doc = _check(await client.post(f"/matching/v1/needs/{out['need_id']}/candidates", params={"k": k},
                                       idempotent=True))
        for rank, c in enumerate(doc.get("candidates") or [], start=1):
            p = c["provider"]
            org = await _organisation(client, p["kind"], p["id"])
            out["candidates"].append({
                "rank": rank, "provider": {**p, "organization_id": org},
                "assignee": {"kind": "provider", "id": org or p["id"], "name": p.get("name")},
                "cost": c.get("cost"), "distance_m": c.get("distance_m"), "reasons": c.get("reasons") or []})
        out["excluded"] = doc.get("excluded") or {}
        if not out["candidates"]:
            out.update(dispatch="manual", reason={"code": "matching.no_candidates",
                                                  "zh": "没有符合条件的服务方，请人工派单",
                                                  "en": "No eligible provider: dispatch manually"})
    except UpstreamError:
        out.update(available=False, dispatch="manual",
                   reason={"code": "matching.unavailable", "zh": UNAVAILABLE[0], "en": UNAVAILABLE[1]})
    except _Refused as exc:
        out.update(available=False, dispatch="manual",
                   reason={"code": "matching.refused", "status": exc.status,
                           "zh": f"匹配服务未能给出推荐（{exc.detail}），请人工派单",
                           "en": f"svc_matching gave no recommendation ({exc.detail}): dispatch manually"})
    async with db.session() as session, session.begin():
        await session.execute(update(ServiceRequest).where(ServiceRequest.id == req.id)
                              .values(matching_candidates=out, matching_need_id=out["need_id"])
                              .execution_options(synchronize_session=False))
    return out
