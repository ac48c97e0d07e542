"""svc_matching's appointment feed: its relay keeps what svc_services knows of each request's appointments.

`PUT /services/v1/request_appointments/{booking_id}` takes the booking's snapshot (svc_services.appointments.service);
it is open to ops and to the system members named in `ONENET_APPOINTMENT_SOURCES` (default svc_matching) only:
a booking names a person's request and when they will be at the counter."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from common.auth import Principal, require_roles
from common.deps import AppClock, AppSettings, DbSession
from common.errors import Problem
from svc_services.appointments.schemas import AppointmentOut, AppointmentSnapshot
from svc_services.appointments.service import apply_snapshot

router = APIRouter(prefix="/services/v1/request_appointments", tags=["appointments 服务预约（来自 svc_matching）"])


def appointment_source(settings: AppSettings,
                       principal: Principal = Depends(require_roles("system", "ops"))) -> Principal:
    if principal.role == "system" and principal.member not in settings.appointment_sources:
        raise Problem(403, "appointment.not_a_source",
                      ("只有预约服务（svc_matching）可更新诉求的预约", "Only svc_matching updates requests' appointments"))
    return principal


@router.put("/{booking_id}", response_model=AppointmentOut,
            summary="更新诉求的预约（svc_matching 的预约推送） Replace a request's appointment",
            description="预约的完整快照（含每一步）；版本号不大于已存版本的更新不改变任何内容（幂等、防乱序）。"
                        "每个尚未记录的步骤（预约、改约、取消……）在诉求的全程记录中记一条。")
async def put_appointment(session: DbSession, clock: AppClock, body: AppointmentSnapshot,
                          booking_id: str = Path(min_length=1, max_length=36),
                          principal: Principal = Depends(appointment_source)):
    async with session.begin():
        return AppointmentOut.model_validate(await apply_snapshot(session, booking_id, body, clock.now()))
