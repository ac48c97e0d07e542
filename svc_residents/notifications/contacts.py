"""Staff contacts: how svc_residents reaches staff and grid workers (the gateway keeps no phone for them)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.crypto import mask_phone
from common.errors import NotFound, Problem, check_version, invalid
from common.ids import new_id
from svc_residents.notifications import access
from svc_residents.notifications.dispatch import STAFF_AAD
from svc_residents.notifications.models import StaffContact
from svc_residents.notifications.schemas import StaffContactIn
from svc_residents.protection import check_phone

CONTACT_NOT_FOUND = NotFound("staff_contact.not_found", ("没有这位工作人员的联系方式", "Unknown staff contact"))


async def get_contact(session: AsyncSession, principal: Principal, user_id: str) -> StaffContact:
    access.require_contact_admin(principal)
    row = (await session.execute(select(StaffContact).where(StaffContact.user_id == user_id))).scalar_one_or_none()
    if row is None or not access.may_manage_contact(principal, row.scope):
        raise CONTACT_NOT_FOUND
    return row


async def put_contact(session: AsyncSession, principal: Principal, protection, user_id: str, body: StaffContactIn,
                      *, now: datetime) -> tuple[StaffContact, bool]:
    access.require_contact_admin(principal)
    if not access.may_manage_contact(principal, body.scope):
        raise Problem(403, "staff_contact.scope_outside", ("该范围不在您的工作范围内", "The scope lies outside yours"))
    row = (await session.execute(select(StaffContact).where(StaffContact.user_id == user_id)
                                 .with_for_update())).scalar_one_or_none()
    if row is not None and not access.may_manage_contact(principal, row.scope):
        raise CONTACT_NOT_FOUND  # someone else's: as unknown
    phone = check_phone(body.phone) if body.phone else None
    created = row is None
    if created:
        if body.version is not None:
            raise invalid("version", "staff_contact.version_on_create", "新登记不带版本号", "A new contact has no version")
        row = StaffContact(id=new_id(), user_id=user_id, created_at=now, version=1)
        session.add(row)
    else:
        if body.version is None:
            raise invalid("version", "staff_contact.version_required", "修改须带当前版本号",
                          "Changing a contact needs its current version")
        check_version(body.version, row.version, "staff_contact.version_conflict",
                      ("联系方式已被他人修改，请刷新后重试", "The contact changed; reload and retry"))
        row.version += 1
    row.role, row.scope, row.display_name = body.role, body.scope, body.display_name
    row.preferred_channel, row.active, row.updated_at = body.preferred_channel, body.active, now
    row.phone_enc = protection.cipher.encrypt(phone, aad=STAFF_AAD.format(user_id)) if phone else None
    row.phone_masked = mask_phone(phone) if phone else None
    await session.flush()
    return row, created
