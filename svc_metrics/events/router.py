from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from common.auth import Principal, require_roles
from common.clock import Clock, get_clock
from common.deps import AppDb, AppSettings
from svc_metrics import gauges
from svc_metrics.events import service
from svc_metrics.events.pipeline import Pipeline
from svc_metrics.events.registry import envelope_schema

router = APIRouter(prefix="/metrics/v1", tags=["events 事件"])


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # each item is checked on its own (service.validate_batch names `events[i].field`); its schema is declared
    events: list[Annotated[Any, WithJsonSchema(envelope_schema())]] = Field(description="事件信封列表 {event_id, type, occurred_at, source, community, grid, "
                                          "subject, data}；整批接收或整批拒绝")


class IngestOut(BaseModel):
    received: int
    accepted: int
    duplicates: int


async def _batch(request: Request) -> EventBatchIn:
    """The body parsed with orjson (a relay's batch is hundreds of KiB: several times faster than the standard
    library FastAPI would use) and checked by the same model, with the same problems."""
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": exc.msg}}]) from None
    try:
        return EventBatchIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


@router.post("/events", response_model=IngestOut, summary="接收事件批次 Ingest a batch of domain events",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": EventBatchIn.model_json_schema()}}}})
async def ingest(request: Request, db: AppDb, settings: AppSettings, pipeline: Pipeline,
                 principal: Principal = Depends(require_roles("system", "ops")),
                 clock: Clock = Depends(get_clock)) -> IngestOut:
    body = await _batch(request)
    events = service.validate_batch(body.events, settings.max_events_per_batch)
    now = clock.now()
    if pipeline is not None:
        result = await pipeline.ingest(events, now)
    else:
        async with db.session() as session, session.begin():
            result = await service.ingest(session, events, now)
    gauges.record_arrival(events, now)
    return IngestOut(**result)


@router.post("/rebuild", summary="从事件库重建指标汇总 Rebuild the rollup from the event store")
async def rebuild(db: AppDb, principal: Principal = Depends(require_roles("ops"))) -> dict[str, int]:
    async with db.session() as session, session.begin():
        return await service.rebuild(session)
