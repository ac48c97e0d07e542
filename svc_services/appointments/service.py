"""A request's appointments (服务预约), as svc_matching's `appointment.` feed reports its bookings for the request.

Each delivery is the booking's full snapshot with every step so far (the feed sends only the newest row of a
batch, ADR 0007), versioned by the booking's own version. Applying one, under the request's row lock: a snapshot
not newer than the stored one changes nothing (retries, a second relay, a late older row); otherwise the stored
appointment takes the new place, time and state, and each step not yet copied (`seq > last_seq`) becomes one
timeline entry of the request: `book` (预约), `reschedule` (改约, with the old and new times), `unbook`
(取消预约), `appointment` for the others (approved, checked in, completed, no-show, promoted from the waitlist).
They are annotations (lifecycle.ANNOTATIONS): the request's state stays, its version counts the entry, as merge's
`absorb` does. Nothing here calls svc_matching, and request intake is not touched (ADR 0011).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import SHANGHAI
from common.errors import invalid
from common.ids import new_id
from svc_services.appointments.models import RequestAppointment
from svc_services.appointments.schemas import AppointmentOut, AppointmentSnapshot, StepIn
from svc_services.requests.models import ServiceRequest, TimelineEntry

# svc_matching's booking step → the request's timeline action (all annotations, svc_services.requests.lifecycle)
STEP_ACTION = {"request": "book", "reschedule": "reschedule", "cancel": "unbook"}
STEP_ZH = {"request": "预约", "reschedule": "改约", "cancel": "取消预约", "approve": "预约已批准",
           "reject": "预约未批准", "check_in": "预约已签到", "complete": "预约已办理", "no_show": "预约爽约",
           "promote": "候补转为预约"}
HOLDING = ("pending_approval", "confirmed", "waitlisted", "checked_in")   # svc_matching's active bookings


def _local(t: datetime) -> str:
    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _note(step: StepIn, before: datetime | None, name: str) -> str:
    label = STEP_ZH.get(step.action, step.action)
    if step.action == "reschedule" and before is not None:
        return f"{label}：{name} {_local(before)} → {_local(step.starts_at)}"
    text = f"{label}：{name} {_local(step.starts_at)}"
    return text + (f"（{step.note}）" if step.note else "")


async def apply_snapshot(session: AsyncSession, booking_id: str, body: AppointmentSnapshot, now: datetime
                         ) -> RequestAppointment:
    # the request's row first, as a write: it serialises every delivery for this request (PostgreSQL's row lock,
    # SQLite's single writer) and says whether the request exists
    row = (await session.execute(
        update(ServiceRequest).where(ServiceRequest.id == body.request_id)
        .values(version=ServiceRequest.version).returning(ServiceRequest.version, ServiceRequest.state)
        .execution_options(synchronize_session=False))).first()
    if row is None:
        raise invalid("request_id", "appointment.request_unknown", "诉求不存在", "No such request")
    version, state = row
    appt = await session.get(RequestAppointment, booking_id)
    if appt is not None and appt.request_id != body.request_id:
        raise invalid("request_id", "appointment.request_mismatch", "该预约属于另一诉求",
                      "This booking is another request's appointment")
    if appt is not None and appt.version >= body.version:
        return appt  # not newer than what is stored: nothing to do
    if appt is None:
        appt = RequestAppointment(booking_id=booking_id, request_id=body.request_id, last_seq=0)
    steps = sorted(body.history, key=lambda s: s.seq)
    before = {s.seq: p.starts_at for p, s in zip(steps, steps[1:])}
    for step in (s for s in steps if s.seq > appt.last_seq):
        version += 1
        session.add(TimelineEntry(
            id=new_id(), request_id=body.request_id, seq=version, action=STEP_ACTION.get(step.action, "appointment"),
            from_state=state, to_state=state, actor=step.actor, role=step.role, acting_for=None,
            note=_note(step, before.get(step.seq), body.resource_name),
            data={"booking_id": booking_id, "booking_action": step.action, "booking_state": step.to_state,
                  "resource_id": body.resource_id, "starts_at": step.starts_at.isoformat(),
                  **({"from_starts_at": before[step.seq].isoformat()} if step.seq in before else {})},
            occurred_at=step.at))
        appt.last_seq = step.seq
    if version != row[0]:
        await session.execute(update(ServiceRequest).where(ServiceRequest.id == body.request_id)
                              .values(version=version, updated_at=now).execution_options(synchronize_session=False))
    appt.resource_id, appt.resource_name, appt.place_code = body.resource_id, body.resource_name, body.place_code
    appt.starts_at, appt.ends_at, appt.state = body.starts_at, body.ends_at, body.state
    appt.version, appt.updated_at = body.version, now
    session.add(appt)
    await session.flush()
    return appt


async def current(session: AsyncSession, request_id: str) -> AppointmentOut | None:
    """The request's appointment: the active booking, else the one changed last (a cancelled one stays shown)."""
    appt = (await session.execute(
        select(RequestAppointment).where(RequestAppointment.request_id == request_id)
        .order_by(case((RequestAppointment.state.in_(HOLDING), 0), else_=1), RequestAppointment.updated_at.desc(),
                  RequestAppointment.booking_id.desc()).limit(1))).scalar_one_or_none()
    return AppointmentOut.model_validate(appt) if appt is not None else None
