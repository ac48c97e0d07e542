from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from common.auth import Principal, require_roles
from common.deps import AppClock, AppSettings, DbSession
from common.errors import Problem
from svc_services.emergency.schemas import EntryIn
from svc_services.emergency.service import record_entry
from svc_services.requests.schemas import TimelineOut

router = APIRouter(prefix="/services/v1/emergency_log", tags=["emergency call-out 紧急呼叫记录"])


def callout_source(settings: AppSettings, principal: Principal = Depends(require_roles("system", "ops"))) -> Principal:
    """Only the call-out's owner (svc_residents, ONENET_CALLOUT_SOURCES) and ops write a request's call-out entries:
    an acknowledgement accepts the request in the acknowledger's name."""
    if principal.role == "system" and principal.member not in settings.callout_sources:
        raise Problem(403, "emergency.not_a_source", ("只有居民信息库（svc_residents）可写入紧急呼叫记录",
                                                      "Only svc_residents writes call-out entries"))
    return principal


@router.put("/{entry_id}", response_model=TimelineOut,
            summary="写入紧急呼叫记录（呼叫、应答） Record a call-out step on the request's timeline")
async def put_entry(body: EntryIn, session: DbSession, clock: AppClock, settings: AppSettings,
                    entry_id: str = Path(min_length=1, max_length=36), principal: Principal = Depends(callout_source)):
    async with session.begin():
        return TimelineOut.model_validate(await record_entry(session, entry_id, body, clock=clock,
                                                             settings=settings))
