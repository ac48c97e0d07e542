"""Duty rosters (值班表): who is on duty for a place, when. Edited by the community / street staff covering the
place and ops; read by place staff covering it. Shifts of one duty at one place never overlap, so at any instant
the chain finds at most one person per duty (a gap means that step is skipped)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, NotFound, Problem, check_version, invalid
from common.ids import new_id
from common.lookup import get_or_404
from common.crypto import FieldProtection, mask_phone
from svc_residents import access
from svc_residents.callout.models import DutyShift
from svc_residents.callout.schemas import ShiftCreate, ShiftUpdate
from svc_residents.places.models import Place
from svc_residents.protection import check_phone

# which level of place each duty belongs to
DUTY_LEVEL = {"backup_worker": "grid", "community_duty": "community", "street_duty": "street"}
DUTY_ZH = {"grid_worker": "网格员", "backup_worker": "备岗网格员", "community_duty": "社区值班电话",
           "street_duty": "街道值班领导"}
LEVEL_ZH = {"grid": "网格", "community": "社区", "street": "街道"}
EDITORS = ("community_staff", "street_staff", "ops")
MAX_SHIFT = timedelta(days=31)
NOT_FOUND = NotFound("roster.not_found", ("值班记录不存在或无权查看", "Duty shift not found"))


def may_read(principal: Principal, place_code: str) -> bool:
    return access.staff_covers(principal, place_code)


def check_edit(principal: Principal, place_code: str) -> None:
    if principal.role not in EDITORS or not (principal.role == "ops" or principal.covers_place(place_code)):
        raise Forbidden(("只有本辖区的社区、街道工作人员可以排班", "Only community or street staff of the place may edit its roster"))


def aad(shift_id: str) -> str:
    return f"svc_residents:duty_shifts:{shift_id}:phone"


def reveal_phone(protection: FieldProtection, shift: DutyShift) -> str | None:
    return protection.cipher.decrypt(shift.phone_enc, aad=aad(shift.id)) if shift.phone_enc else None


def _check_times(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise invalid("ends_at", "roster.ends_before_start", "值班结束时间须晚于开始时间", "ends_at must be after starts_at")
    if ends_at - starts_at > MAX_SHIFT:
        raise invalid("ends_at", "roster.too_long", "单次值班不能超过 31 天", "A shift lasts at most 31 days")


async def _check_overlap(session: AsyncSession, shift_id: str | None, place_code: str, duty: str,
                         starts_at: datetime, ends_at: datetime) -> None:
    stmt = select(DutyShift).where(DutyShift.place_code == place_code, DutyShift.duty == duty,
                                   DutyShift.starts_at < ends_at, DutyShift.ends_at > starts_at)
    if shift_id:
        stmt = stmt.where(DutyShift.id != shift_id)
    other = (await session.execute(stmt.limit(1))).scalar_one_or_none()
    if other is not None:
        raise Conflict("roster.overlap", (f"与已有值班（{other.name}，{other.starts_at.isoformat()} 至 "
                                          f"{other.ends_at.isoformat()}）时间重叠",
                                          f"Overlaps the shift of {other.name}"),
                       extra={"overlaps": other.id})


async def _lock_place(session: AsyncSession, place_code: str) -> None:
    """Two editors of one place's roster take turns (PostgreSQL), so both cannot pass the overlap check."""
    await session.execute(select(Place.code).where(Place.code == place_code).with_for_update())


def _set_phone(protection: FieldProtection, shift: DutyShift, phone: str | None) -> None:
    if phone is None:
        shift.phone_enc = shift.phone_masked = None
        return
    clear = check_phone(phone)
    shift.phone_enc = protection.cipher.encrypt(clear, aad=aad(shift.id))
    shift.phone_masked = mask_phone(clear)


def _check_contact(duty: str, user_id: str | None, phone_enc: str | None) -> None:
    if duty == "community_duty" and phone_enc is None:
        raise invalid("phone", "roster.phone_required", "社区值班须登记值班电话", "A community duty shift needs a phone")
    if user_id is None:  # the call-out reaches people through their account (push, and staff_contacts' phone)
        raise invalid("user_id", "roster.contact_required", "须登记值班人员的工作账号",
                      "A shift needs the staff account of whoever is on duty")


async def create_shift(session: AsyncSession, principal: Principal, protection: FieldProtection, body: ShiftCreate,
                       *, now: datetime) -> DutyShift:
    place = await session.get(Place, body.place_code)
    want = DUTY_LEVEL[body.duty]
    if place is None or place.level != want:
        raise invalid("place_code", "roster.place_level", f"{DUTY_ZH[body.duty]}须排在{LEVEL_ZH[want]}上",
                      f"A {body.duty} shift belongs to a {want}")
    check_edit(principal, place.code)
    _check_times(body.starts_at, body.ends_at)
    await _lock_place(session, place.code)
    await _check_overlap(session, None, place.code, body.duty, body.starts_at, body.ends_at)
    shift = DutyShift(id=new_id(), place_code=place.code, duty=body.duty, name=body.name.strip(), user_id=body.user_id,
                      starts_at=body.starts_at, ends_at=body.ends_at, created_by=principal.caller, created_at=now,
                      updated_at=now, version=1)
    _set_phone(protection, shift, body.phone)
    _check_contact(shift.duty, shift.user_id, shift.phone_enc)
    session.add(shift)
    await session.flush()
    return shift


async def get_shift(session: AsyncSession, principal: Principal, shift_id: str, *, for_update: bool = False):
    return await get_or_404(session, DutyShift, shift_id, NOT_FOUND, for_update=for_update,
                            visible=lambda s: may_read(principal, s.place_code))


async def update_shift(session: AsyncSession, principal: Principal, protection: FieldProtection, shift_id: str,
                       body: ShiftUpdate, *, now: datetime) -> DutyShift:
    shift = await get_shift(session, principal, shift_id, for_update=True)
    check_edit(principal, shift.place_code)
    check_version(body.version, shift.version)
    given = body.model_fields_set - {"version"}
    starts = body.starts_at if "starts_at" in given and body.starts_at else shift.starts_at
    ends = body.ends_at if "ends_at" in given and body.ends_at else shift.ends_at
    _check_times(starts, ends)
    if (starts, ends) != (shift.starts_at, shift.ends_at):
        await _lock_place(session, shift.place_code)
        await _check_overlap(session, shift.id, shift.place_code, shift.duty, starts, ends)
    if "name" in given and body.name:
        shift.name = body.name.strip()
    if "user_id" in given:
        shift.user_id = body.user_id
    if "phone" in given:
        _set_phone(protection, shift, body.phone)
    _check_contact(shift.duty, shift.user_id, shift.phone_enc)
    shift.starts_at, shift.ends_at = starts, ends
    shift.version += 1
    shift.updated_at = now
    await session.flush()
    return shift


async def delete_shift(session: AsyncSession, principal: Principal, shift_id: str, version: int | None) -> None:
    shift = await get_shift(session, principal, shift_id, for_update=True)
    check_edit(principal, shift.place_code)
    if version is None:
        raise Problem(428, "precondition_required", ("请在 version 参数中给出当前版本号", "Give the current version"))
    check_version(version, shift.version)
    await session.delete(shift)


def list_stmt(principal: Principal, place_code: str, at: datetime | None):
    if not may_read(principal, place_code):
        raise Forbidden(("只能查看本辖区的值班表", "You may only read rosters of places in your scope"))
    stmt = select(DutyShift).where(DutyShift.place_code == place_code)
    if at is not None:
        stmt = stmt.where(DutyShift.starts_at <= at, DutyShift.ends_at > at)
    return stmt


async def on_duty(session: AsyncSession, place_code: str, duty: str, at: datetime) -> DutyShift | None:
    stmt = (select(DutyShift).where(DutyShift.place_code == place_code, DutyShift.duty == duty,
                                    DutyShift.starts_at <= at, DutyShift.ends_at > at).limit(1))
    return (await session.execute(stmt)).scalar_one_or_none()
