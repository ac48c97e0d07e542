"""Once-only materials (一次采集、多方共享): what an item requires is fetched from the department that holds it,
through the gateway's exchange, instead of being asked from the resident.

On acceptance (and on `POST …/materials/fetch`, the retry path) each required material of the request's item
version gets a record (`request_materials`). For a material a department supplies (`source: exchange`):
1. the person's ID number is read from svc_residents through the gateway (`reveal=true` with a purpose, under the
   caller's token: svc_residents decides whether this staff member may see it, and logs the read); it is used for
   the question only and never stored here;
2. the department is asked at `/departments/{department}/v1/queries` through the gateway (the exchange checks the
   grant, masks the answer to it and logs the call; the purpose travels in X-OneNet-Purpose);
3. the record becomes `fetched` with the answer, the time and where it came from (department, path, request id of
   the exchange call); a failure leaves it `pending` with the error and the attempt count, to retry.
Materials the resident uploads wait in `awaiting_upload` for a file (svc_services.materials.uploads); a request without a person has nothing to ask about
(`not_applicable`). The HTTP calls run outside any database transaction. Each material fetched is a `material.obtained` event (`source: exchange`), each upload one
with `source: upload` (svc_services.materials.uploads), for the once-only indicators (declared in svc_metrics'
event registry); the gateway's message log records each exchange call besides.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.context import request_id_var
from common.errors import Problem
from common.http_client import UpstreamError
from common.ids import new_id
from svc_services.catalogue.models import CatalogueItemVersion
from svc_services.materials.models import RequestMaterial
from svc_services.requests.lifecycle import GRID, MANAGERS, OWNER
from svc_services.requests.models import ServiceRequest
from svc_services.requests.service import get_request

FETCHERS = MANAGERS + GRID + ("dept_staff", "system")
# who sees the departments' answers (a provider working the request sees the status only)
DATA_READERS = MANAGERS + GRID + ("dept_staff", "system") + OWNER


def _initial_status(m: dict[str, Any], req: ServiceRequest) -> str:
    if m.get("source") != "exchange":
        return "awaiting_upload"
    return "pending" if req.person_id else "not_applicable"


async def _records(session: AsyncSession, request_id: str) -> list[RequestMaterial]:
    return list((await session.execute(select(RequestMaterial).where(RequestMaterial.request_id == request_id)
                                       .order_by(RequestMaterial.created_at, RequestMaterial.code))).scalars())


async def list_materials(session: AsyncSession, principal: Principal, request_id: str) -> list[RequestMaterial]:
    req = await get_request(session, principal, request_id)
    return await _records(session, req.id)


async def ensure_records(db, req: ServiceRequest, now) -> list[RequestMaterial]:
    """One record per material of the request's item version (idempotent, safe against a concurrent caller)."""
    async with db.session() as session:
        iv = await session.get(CatalogueItemVersion, (req.item_code, req.item_version))
        have = {m.code for m in await _records(session, req.id)}
    missing = [m for m in (iv.materials or []) if m["code"] not in have]
    if missing:
        try:
            async with db.session() as session, session.begin():
                for m in missing:
                    session.add(RequestMaterial(
                        id=new_id(), request_id=req.id, code=m["code"], name=m["name"],
                        source=m.get("source") or "upload", department=m.get("department"),
                        required=m.get("required", True), status=_initial_status(m, req), attempts=0,
                        created_at=now, updated_at=now))
        except IntegrityError:
            pass  # a concurrent fetch created them
    async with db.session() as session:
        return await _records(session, req.id)


def _error(resp) -> str:
    try:
        body = resp.json()
        detail = body.get("detail") or body.get("code")
    except ValueError:
        detail = None
    return f"HTTP {resp.status_code}" + (f": {detail}" if detail else "")


def _purpose(req: ServiceRequest, what: str) -> dict[str, str]:
    return {"X-OneNet-Purpose": quote(f"诉求 {req.id} 一次采集材料（{what}） once-only materials", safe="")}


async def _id_number(app: FastAPI, req: ServiceRequest) -> str:
    resp = await app.state.exchange_client.get(
        f"/residents/v1/persons/{req.person_id}",
        params={"reveal": "true", "purpose": f"诉求 {req.id} 一次采集材料 once-only materials"},
        headers=_purpose(req, "身份证号"))
    if resp.status_code != 200 or not resp.json().get("id_number"):
        raise _Failed(f"居民身份证号无法获取 / ID number unavailable ({_error(resp)})")
    return resp.json()["id_number"]


class _Failed(Exception):
    pass


async def _ask(app: FastAPI, req: ServiceRequest, m: RequestMaterial, id_number: str) -> dict[str, Any]:
    headers = _purpose(req, m.name)
    provider = getattr(app.state, "service_token", None)
    if provider is not None:  # the member svc_services holds the grants for once-only materials
        headers["Authorization"] = f"Bearer {await provider()}"
    path = f"/departments/{m.department}/v1/queries"
    resp = await app.state.exchange_client.post(path, json={"id_number": id_number}, headers=headers,
                                                idempotent=True)  # a read: safe to retry
    if resp.status_code != 200:
        raise _Failed(_error(resp))
    body = resp.json()
    return {"data": body.get("data"),
            "fetched_from": {"department": m.department, "department_name": body.get("department_name"),
                             "via": "gateway exchange", "path": path, "request_id": request_id_var.get()}}


async def fetch(app: FastAPI, principal: Principal, request_id: str) -> list[RequestMaterial]:
    """Create the records if missing, then fetch every pending exchange material once; failures stay pending."""
    db, clock = app.state.db, app.state.clock
    async with db.session() as session:
        req = await get_request(session, principal, request_id)
    if principal.role not in FETCHERS:
        raise Problem(403, "forbidden", ("只有工作人员可以调取材料", "Only staff fetch materials"))
    records = await ensure_records(db, req, clock.now())
    pending = [m for m in records if m.status == "pending"]
    if not pending:
        return records
    results: dict[str, dict[str, Any]] = {}
    try:
        id_number = await _id_number(app, req)
    except (UpstreamError, _Failed) as exc:
        id_number = None
        for m in pending:
            results[m.id] = {"error": _message(exc)}
    if id_number is not None:
        for m in pending:
            try:
                results[m.id] = await _ask(app, req, m, id_number)
            except (UpstreamError, _Failed) as exc:
                results[m.id] = {"error": _message(exc)}
    now = clock.now()
    from svc_services.materials.uploads import complete_if_present, material_event
    async with db.session() as session, session.begin():
        fetched = False
        for m in pending:
            r = results[m.id]
            values: dict[str, Any] = {"attempts": RequestMaterial.attempts + 1, "last_attempt_at": now,
                                      "updated_at": now}
            if "error" in r:
                values["last_error"] = r["error"][:500]
            else:
                values.update(status="fetched", fetched_at=now, fetched_from=r["fetched_from"], data=r["data"],
                              last_error=None)
            done = await session.execute(update(RequestMaterial)
                                         .where(RequestMaterial.id == m.id, RequestMaterial.status == "pending")
                                         .values(**values).execution_options(synchronize_session=False))
            if "error" not in r and done.rowcount:  # once-only indicator: a material the resident was not asked for
                material_event(session, "material.obtained", req, m, now, via="exchange")
                fetched = True
        if fetched:
            await complete_if_present(session, req, now)
    async with db.session() as session:
        return await _records(session, req.id)


def _message(exc: Exception) -> str:
    if isinstance(exc, UpstreamError):
        return f"交换平台暂不可用 / the exchange is unavailable ({exc})"
    return str(exc)
