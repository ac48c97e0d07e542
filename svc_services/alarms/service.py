"""A device's alarm filed through the request intake, once per alarm."""
from __future__ import annotations

from fastapi.responses import JSONResponse, Response

from common.auth import Principal
from common.clock import Clock
from common.db import Database
from common.errors import Problem
from svc_services.alarms.schemas import AlarmIn
from svc_services.requests.group_commit import IntakeWriter
from svc_services.requests.intake import submit_request
from svc_services.requests.models import ServiceRequest
from svc_services.requests.payloads import to_out
from svc_services.requests.schemas import Location, RequestCreate

PATH = "/services/v1/device_alarms/{}"


def device_principal(source: Principal, body: AlarmIn) -> Principal:
    """Who files it: the device, through its registry's member, for the bound person (the timeline's actor and
    acting_for name both)."""
    return Principal(member=source.member, user=f"device:{body.device_id}", role="system")


async def file_alarm(intake: IntakeWriter, db: Database, source: Principal, alarm_id: str, body: AlarmIn, *,
                     clock: Clock, item_code: str) -> Response:
    """201 with the request; a redelivery replays it (Idempotency-Key `alarm:<id>`), and once that record is past
    its retention the request itself answers (its id came with the alarm). Problems of the intake (an unknown grid,
    the alarm item withdrawn) answer as they are: the feed keeps the alarm pending and retries."""
    device = device_principal(source, body)
    async with db.session() as session:
        filed = await session.get(ServiceRequest, body.request_id)
    if filed is not None:
        if filed.submitted_by != device.caller or filed.channel != "iot":
            raise Problem(409, "alarm.request_id_taken", ("该诉求编号已被其他诉求占用", "The request id is taken"))
        return JSONResponse(to_out(filed, device).model_dump(mode="json"), status_code=200)
    request = RequestCreate(item_code=item_code, channel="iot", description=body.description,
                            person_id=body.person_id, location=Location(grid=body.grid, address=body.address))
    return await submit_request(intake, device, request, clock, key=f"alarm:{alarm_id}",
                                path=PATH.format(alarm_id), request_id=body.request_id)
