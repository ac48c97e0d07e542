"""One household read by a department or member system under an exchange grant (`residents.households`).

The exchange's one rule (`common.masking`, on `common.exchange_fields.HOUSEHOLD_FIELDS`): a field inside the
grant's scope is given clear; outside it a sensitive (or core/important non-personal) field is left out, a
personal field is masked, a general one is passed. A field the catalogue does not declare is never given.

Members: the catalogue entry of `residents.households` declares no member field (only `head_person_id`), so no
grant on it can cover one and the household is given without its members. Members are persons: they are read
under a `residents.persons` grant, one exact look-up at a time (a households grant is not a way to browse them).

A personal field given clear (the address, the head) is recorded in the access audit with the grant's purpose.
What a grant reader may do: read one household by id; listing households stays closed.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.context import request_id_var
from common.exchange_fields import HOUSEHOLD_FIELDS
from common.ids import new_id
from common.masking import grant_view
from svc_residents.audit.models import AccessAudit
from svc_residents.grants import GrantInfo
from svc_residents.households.models import Household
from svc_residents.households.schemas import HouseholdOut


def view(session: AsyncSession, principal: Principal, grant: GrantInfo, household: Household,
         purpose: str | None, *, now: datetime) -> dict:
    """The household as the grant allows (no members); clear personal fields are audited (same session)."""
    full = HouseholdOut.model_validate(household).model_dump(mode="json")
    out = grant_view(full, HOUSEHOLD_FIELDS, grant.fields)
    clear_fields = [fd["path"] for fd in HOUSEHOLD_FIELDS
                    if fd["personal"] and grant.covers(fd["path"]) and full.get(fd["path"]) is not None]
    if clear_fields:
        session.add(AccessAudit(
            id=new_id(), occurred_at=now, member=principal.member, user_id=principal.user[:80],
            role=principal.role, acting_for=principal.acting_for, subject_type="household",
            subject_id=household.id, fields=clear_fields, purpose=(grant.purpose or "exchange")[:200],
            request_id=request_id_var.get(),
            extra={"grant_id": grant.id, "resource": grant.resource, "consumer": grant.consumer,
                   "caller_purpose": (purpose or "")[:500] or None}))
    return out
