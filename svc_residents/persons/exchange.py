"""Persons read by a department or member system under an exchange grant (`residents.persons`).

The grant decides field by field, with the exchange's own rule (`common.masking`, on the fields
`common.exchange_fields.PERSON_FIELDS` declares): a field inside the
grant's scope is given clear (an encrypted one is decrypted and the read recorded with the grant's purpose); a
field outside it is left out when it is sensitive (or a core/important non-personal field), masked when it is
personal information, passed when it is general. A field the catalogue does not declare is never given: a
department sees only what its grant covers. For a member system the gateway applies the same rule again on the
way out; for a department clerk signed in through an app it does not, so the service must.

What a grant reader may do: look a person up by exact ID number (POST /persons/search with `id_number` and no
other filter: no browsing by name, grid or tag) and read one person by id.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.context import request_id_var
from common.errors import invalid
from common.exchange_fields import PERSON_FIELDS
from common.ids import new_id
from common.masking import grant_view
from svc_residents import protection as prot
from svc_residents.audit.models import AccessAudit
from svc_residents.grants import GrantInfo
from svc_residents.persons.models import Person, PersonTag
from svc_residents.persons.schemas import PersonSearch

ENCRYPTED = ("id_number", "phone")


def check_search(q: PersonSearch) -> None:
    if not q.id_number:
        raise invalid("id_number", "exchange.id_number_required", "经数据交换只能按身份证号精确查询居民",
                      "Through the exchange a person is looked up by exact ID number only")
    for name in ("name", "phone", "grid_code", "community_code", "household_id", "tag", "age_min", "age_max"):
        if getattr(q, name) is not None:
            raise invalid(name, "exchange.filter_not_allowed", "经数据交换查询时不能使用该条件",
                          "This filter is not available through the exchange")


async def search(session: AsyncSession, protection, q: PersonSearch) -> list[Person]:
    number = prot.check_id_number(q.id_number).number
    stmt = select(Person).where(Person.id_number_bidx == prot.id_number_index(protection, number))
    return list((await session.execute(stmt)).scalars())


def view(session: AsyncSession, principal: Principal, protection, grant: GrantInfo, person: Person,
         tags: list[PersonTag], person_out, purpose: str | None, *, now: datetime) -> dict:
    """The person as the grant allows; a clear encrypted field is recorded in the access audit (same session)."""
    clear = {f: prot.reveal(protection, person.id, f, getattr(person, f"{f}_enc"))
             for f in ENCRYPTED if grant.covers(f)}
    full = person_out(person, tags, now=now).model_dump(mode="json")
    out = grant_view({**full, **clear}, PERSON_FIELDS, grant.fields)
    clear_fields = [f for f in ENCRYPTED if clear.get(f) is not None]
    out["revealed"] = bool(clear_fields)
    if clear_fields:
        session.add(AccessAudit(
            id=new_id(), occurred_at=now, member=principal.member, user_id=principal.user[:80],
            role=principal.role, acting_for=principal.acting_for, subject_type="person", subject_id=person.id,
            fields=clear_fields, purpose=(grant.purpose or "exchange")[:200], request_id=request_id_var.get(),
            extra={"grant_id": grant.id, "resource": grant.resource, "consumer": grant.consumer,
                   "caller_purpose": (purpose or "")[:500] or None}))
    return out
