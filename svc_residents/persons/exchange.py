"""Persons read by a department or member system under an exchange grant (`residents.persons`).

The grant decides field by field, with the exchange's own rule (gateway/exchange/policy.py): a field inside the
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
from common.crypto import mask_generic, mask_id_number, mask_name, mask_phone
from common.errors import invalid
from common.ids import new_id
from svc_residents import protection as prot
from svc_residents.audit.models import AccessAudit
from svc_residents.grants import GrantInfo
from svc_residents.persons.models import Person, PersonTag
from svc_residents.persons.schemas import PersonSearch

# The fields of `residents.persons` as the exchange catalogue declares them (gateway/exchange/catalogue_data.py;
# a test keeps the two in step): path -> (grade, personal, sensitive, mask). A field not declared here is not
# given to a grant reader at all.
G, I, C = "general", "important", "core"
CATALOGUE_FIELDS: dict[str, tuple[str, bool, bool, str | None]] = {
    "id": (G, False, False, None), "name": (I, True, False, "name"),
    "id_number": (C, True, True, "id_number"), "phone": (I, True, False, "phone"),
    "revealed": (G, False, False, None), "household_id": (G, True, False, None),
    "birth_date": (I, True, False, "generic"), "age": (I, True, False, None), "sex": (I, True, False, "generic"),
    "residency_type": (I, True, False, "generic"), "relation_to_head": (I, True, False, "generic"),
    "preferred_channel": (G, True, False, "generic"), "accessibility_needs": (C, True, True, None),
    "grid_code": (G, False, False, None), "community_code": (G, False, False, None),
    "tags": (C, True, True, None), "created_at": (G, False, False, None), "updated_at": (G, False, False, None),
    "version": (G, False, False, None), "merged_into": (G, True, False, None),
}
ENCRYPTED = ("id_number", "phone")


def _masked(value, kind: str | None):
    """The exchange's masking of a personal field outside the grant (non-strings become null)."""
    if isinstance(value, list):
        return [_masked(v, kind) for v in value]
    if not isinstance(value, str):
        return None
    if kind == "id_number":
        return mask_id_number(value)
    if kind == "name":
        return mask_name(value)
    if kind == "phone":
        return mask_phone(value)
    return mask_generic(value, 1, 1) if len(value) > 4 else "*" * len(value)


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
    out: dict = {}
    for name, (grade, personal, sensitive, kind) in CATALOGUE_FIELDS.items():
        if name not in full:
            continue
        if grant.covers(name):
            out[name] = clear[name] if name in clear else full[name]
        elif sensitive or (not personal and grade in ("core", "important")):
            continue  # outside the grant: removed
        elif personal:
            out[name] = _masked(full[name], kind)
        else:
            out[name] = full[name]
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
