from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from common.auth import Principal, require_roles
from common.deps import AppClock, AppDb, AppSettings
from common.errors import Problem
from svc_services.alarms.schemas import AlarmIn
from svc_services.alarms.service import file_alarm
from svc_services.requests.group_commit import Intake
from svc_services.requests.schemas import RequestOut

router = APIRouter(prefix="/services/v1/device_alarms", tags=["device alarms 设备报警"])


def alarm_source(settings: AppSettings, principal: Principal = Depends(require_roles("system"))) -> Principal:
    """Only the devices' registry (svc_residents, ONENET_ALARM_SOURCES) files devices' alarms: it checked that the
    alarm came from the device's own platform and where the device is."""
    if principal.member not in settings.alarm_sources:
        raise Problem(403, "alarm.not_a_source", ("只有居民信息库（svc_residents）可转报设备报警",
                                                  "Only svc_residents files devices' alarms"))
    return principal


@router.put("/{alarm_id}", status_code=201, response_model=RequestOut,
            summary="设备报警立案为紧急诉求（svc_residents 推送） File a device's alarm as an emergency request")
async def put_alarm(body: AlarmIn, intake: Intake, db: AppDb, clock: AppClock, settings: AppSettings,
                    alarm_id: str = Path(min_length=1, max_length=36), principal: Principal = Depends(alarm_source)):
    return await file_alarm(intake, db, principal, alarm_id, body, clock=clock, item_code=settings.alarm_item_code)
