from __future__ import annotations

import json
import re

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from common.acting import acts, checked_by_handler, from_field
from common.auth import Principal
from common.deps import AppClock, AppDb, AppSettings, CurrentPrincipal, DbSession
from common.direct_routes import DirectRoute
from common.errors import Problem, invalid
from common.pagination import Page, PageParams, encode_cursor
from svc_services.appointments import service as appointments
from svc_services.clients import MatchingClient
from svc_services.codes import Channel, Priority
from svc_services.deps import Idempotent
from svc_services.dispatch import service as dispatch_service
from svc_services.materials import service as materials
from svc_services.materials.router import materials_out
from svc_services.requests import duplicates, service
from svc_services.requests.group_commit import Intake
from svc_services.requests.intake import submit_request
from svc_services.requests.payloads import to_out
from svc_services.requests.lifecycle import STATES
from svc_services.requests.schemas import DuplicateOut, RequestCreate, RequestOut, TimelineOut, TransitionIn

router = APIRouter(prefix="/services/v1/requests", tags=["requests 诉求工单"])


# the version seen, as the ETag gave it (`"3"`, weak `W/"3"`) or bare; ASCII digits only (a Latin-1 `²` is a digit
# to str.isdigit, not to int)
IF_MATCH = re.compile(r'^[ \t]*(?:W/)?(?:"([0-9]{1,18})"|([0-9]{1,18}))[ \t]*$')


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = IF_MATCH.match(value)
    if m is None:
        raise Problem(400, "bad_request", ("If-Match 应为版本号，例如 \"3\"", 'If-Match must be a version like "3"'))
    return int(m.group(1) or m.group(2))


@router.post("", status_code=201, response_model=RequestOut, dependencies=[checked_by_handler("requests.submit")],
             summary="提交诉求 Submit a request")
async def submit(body: RequestCreate, intake: Intake, principal: CurrentPrincipal, clock: AppClock, idem: Idempotent):
    return await submit_request(intake, principal, body, clock, key=idem.key)


async def _submit_direct(request: Request, body: RequestCreate, principal: Principal) -> Response:
    # called by the DirectRoutes middleware, which solves no dependencies: it hands over the request, and the
    # intake and clock are the ones `submit`'s dependencies give (`app.state.intake`, `app.state.clock`)
    return await submit_request(request.app.state.intake, principal, body, request.app.state.clock,
                                key=request.headers.get("idempotency-key"))


# the route above without FastAPI's routing and dependency solving, for a well-formed submission (common.direct_routes)
SUBMIT_DIRECT = DirectRoute("POST", "/services/v1/requests", "submit", RequestCreate, _submit_direct)


@router.get("", response_model=Page[RequestOut],
            summary="诉求列表：本人诉求或工作队列 Own requests or the staff queue (scoped)")
async def list_requests(session: DbSession, principal: CurrentPrincipal, mine: bool = Query(False, description="只看本人的（居民/代办默认即本人）"),
                        state: list[str] | None = Query(None, description="可多选"),
                        overdue: bool | None = None, priority: Priority | None = None,
                        channel: Channel | None = None, item_code: str | None = None,
                        grid: str | None = None, community: str | None = None,
                        page: PageParams = Depends()):
    if state:
        bad = [s for s in state if s not in STATES]
        if bad:
            raise invalid("state", "state.unknown", f"未知状态：{'、'.join(bad)}", f"Unknown state: {', '.join(bad)}",
                          where="query")
    rows = await service.list_requests(
        session, principal, mine=mine, states=state, overdue=overdue, priority=priority, channel=channel,
        item_code=item_code, grid=grid, community=community, after=page.after_key(), limit=page.limit)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page[RequestOut](items=[to_out(r, principal) for r in rows],
                            next_cursor=encode_cursor(rows[-1].id) if more else None)


@router.get("/{request_id}", response_model=RequestOut, summary="诉求详情（含全程记录） A request with its timeline")
async def get_request(request_id: str, response: Response, session: DbSession, principal: CurrentPrincipal):
    req = await service.get_request(session, principal, request_id)
    entries = await service.timeline(session, req.id)
    rows = await materials.list_materials(session, principal, req.id)
    response.headers["ETag"] = f'"{req.version}"'
    out = to_out(req, principal, entries)
    out.materials = materials_out(rows, principal)
    out.appointment = await appointments.current(session, req.id)
    return out


@router.get("/{request_id}/duplicates", response_model=list[DuplicateOut],
            summary="疑似重复诉求（50 米、72 小时内同一事项） Possible duplicates")
async def get_duplicates(request_id: str, session: DbSession, principal: CurrentPrincipal, settings: AppSettings):
    req = await service.get_request(session, principal, request_id)
    return await duplicates.find(session, principal, req, settings)


@router.get("/{request_id}/timeline", response_model=list[TimelineOut], summary="全程记录 Timeline")
async def get_timeline(request_id: str, session: DbSession, principal: CurrentPrincipal):
    req = await service.get_request(session, principal, request_id)
    return [TimelineOut.model_validate(t) for t in await service.timeline(session, req.id)]


@router.post("/{request_id}/transitions", response_model=RequestOut,
             dependencies=[acts(from_field("action", "requests"))],
             summary="流转：受理、派单、接单、退单、办结、评价、重办、升级、撤销、合并 Move a request")
async def transition(request_id: str, body: TransitionIn, request: Request, idem: Idempotent, db: AppDb,
                     settings: AppSettings, principal: CurrentPrincipal, clock: AppClock, matching: MatchingClient,
                     if_match: str | None = Header(None, alias="If-Match", description='看到的版本号，如 "3"（或 body 的 version）',
                                                   json_schema_extra={"pattern": IF_MATCH.pattern})):
    expected = parse_if_match(if_match)
    matching_now = None
    if body.action == "dispatch" and body.candidate_rank is None:
        # a manual dispatch says whether svc_matching was down (asked here, outside the write transaction)
        matching_now = await dispatch_service.matching_probe(matching, clock)

    async def create(session):
        req = await service.transition(session, principal, request_id, body, if_match=expected, clock=clock,
                                       settings=settings, matching_now=matching_now)
        return 200, to_out(req, principal, await service.timeline(session, req.id))

    async with db.write_gate():
        resp = await idem.run([body.model_dump(), expected], create)
    if body.action == "accept" and resp.status_code == 200:
        # once-only materials, fetched from the departments once the acceptance is committed (outside the write
        # gate); a failed fetch leaves them pending, to retry at POST …/materials/fetch. A replay shows them as
        # they are now.
        if resp.headers.get("idempotency-replayed") == "true":
            async with db.session() as session:
                rows = await materials.list_materials(session, principal, request_id)
        else:
            rows = await materials.fetch(request.app, principal, request_id)
        doc = json.loads(resp.body)
        doc["materials"] = jsonable_encoder(materials_out(rows, principal))
        headers = {k: v for k, v in resp.headers.items() if k.lower() == "idempotency-replayed"}
        return JSONResponse(doc, status_code=200, headers=headers)
    return resp
