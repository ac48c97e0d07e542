"""Real-name binding of residents' accounts (issue 25): the gateway, for a resident signed in by phone, asks
here with the name and ID number the resident gave and their consent to the check.

1. The ID number's checksum (common.validators) and the consent: 422 naming the field, nothing asked.
2. 公安 is asked through the exchange, as every once-only verification is (svc_residents' grant on
   `gongan.hukou`, the message log), with the name: a name 公安 does not confirm is a 422 on `name` with 公安's
   words, a department that cannot answer a 503; either way nothing is written.
3. A record holding that number (by its blind index; a merged duplicate's survivor): the account is bound to it
   and the consent is added to the person's consents. No record: the binding waits (`pending`) for the staff of
   the community the resident named, who confirm it by making the record in a household
   (persons.service.create_person, the same rules as any registration) or refuse it.

Only the gateway's own token (member `gateway`, role system) may ask; staff of the community decide pending
ones. An account binds once; an ID number binds one account (409 otherwise).
"""
from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import local_date
from common.crypto import mask_id_number
from common.errors import Problem, invalid
from common.lookup import get_or_404
from common.http_client import UpstreamError
from common.ids import new_id
from svc_residents import access, protection as prot
from svc_residents.identity.models import AccountBinding
from svc_residents.persons.models import Consent, Person
from svc_residents.persons.schemas import PersonCreate
from svc_residents.persons.service import create_person
from svc_residents.protection import FieldProtection

GATEWAY_MEMBER = "gateway"
DECIDERS = (*access.REVEAL_STAFF, "ops")


def require_gateway(principal: Principal) -> None:
    if principal.member != GATEWAY_MEMBER or principal.role != "system":
        raise Problem(403, "binding.gateway_only", ("只有统一身份认证（网关）可以办理账号实名绑定",
                                                    "Only the platform's identity provider binds accounts"))


async def ask_gongan(app: FastAPI, id_number: str, name: str) -> tuple[bool, str | None]:
    """(confirmed, 公安's words); a Problem when 公安 cannot answer through the exchange."""
    client = app.state.department_clients["gongan"]
    provider = getattr(app.state, "service_token", None)
    headers = {"X-OneNet-Purpose": quote("居民账号实名认证（本人同意） account real-name check, with consent", safe="")}
    unavailable = Problem(503, "identity.check_unavailable", ("公安身份核验暂时无法完成，请稍后再试",
                                                           "The identity check cannot be done now; try again"))
    try:
        if provider is not None:
            headers["Authorization"] = f"Bearer {await provider()}"
        resp = await client.post("/departments/gongan/v1/queries", json={"id_number": id_number, "name": name},
                                 headers=headers, idempotent=True, forward_caller_token=provider is None)
    except (UpstreamError, OSError):
        raise unavailable from None
    if resp.status_code != 200:
        raise unavailable
    data = (resp.json() or {}).get("data") or {}
    message = data.get("identity_message") if isinstance(data.get("identity_message"), str) else None
    return data.get("identity_match") is True, message


async def _survivor(session: AsyncSession, person: Person) -> Person:
    seen = 0
    while person.merged_into and seen < 5:
        person = await session.get(Person, person.merged_into)
        seen += 1
    return person


def _consent(binding: AccountBinding, person_id: str, now: datetime) -> Consent:
    return Consent(id=new_id(), person_id=person_id, purpose="identity_check", granted=True,
                   channel=binding.channel, recorded_at=binding.consented_at, recorded_by=f"account/{binding.account}",
                   recorded_role="resident", note=binding.consent_text[:200],
                   extra={"binding": binding.id, "bound_at": now.isoformat()})


async def bind(app: FastAPI, session: AsyncSession, principal: Principal, protection: FieldProtection, *,
               account: str, name: str, id_number: str, consent: bool, consent_text: str, channel: str,
               community: str | None, now: datetime) -> AccountBinding:
    require_gateway(principal)
    resident_id = prot.check_id_number(id_number, today=local_date(now))
    if not consent:
        raise invalid("consent", "consent.required", "须同意由公安核验姓名与身份证号",
                      "Consent to the police identity check is required")
    name = name.strip()
    bidx = prot.id_number_index(protection, resident_id.number)
    mine = (await session.execute(select(AccountBinding).where(AccountBinding.account == account)))\
        .scalar_one_or_none()
    if mine is not None and mine.status != "refused":
        if mine.id_number_bidx == bidx:
            return mine  # asked again: the same answer
        raise Problem(409, "binding.exists", ("该账号已实名认证", "This account is bound already"))
    taken = (await session.execute(select(AccountBinding).where(AccountBinding.id_number_bidx == bidx)))\
        .scalar_one_or_none()
    if taken is not None and taken.account != account and taken.status != "refused":
        raise Problem(409, "binding.id_number_taken", ("该身份证号已绑定其他账号，如有疑问请联系社区",
                                                        "This ID number is bound to another account"))
    person = (await session.execute(select(Person).where(Person.id_number_bidx == bidx))).scalar_one_or_none()
    if person is None and not community:
        raise invalid("community", "binding.community_required", "没有您的居民档案：请选择居住的社区，由社区工作人员核实",
                      "No record holds this ID number: name your community, its staff will confirm")
    await session.rollback()  # no transaction held while 公安 answers
    confirmed, message = await ask_gongan(app, resident_id.number, name)
    if not confirmed:
        raise invalid("name", "identity.not_confirmed", message or "公安未能核验姓名与身份证号",
                      "The police did not confirm this name and ID number")
    async with session.begin():
        for old in {id(o): o for o in (mine, taken) if o is not None}.values():  # a refused one: asked anew
            await session.delete(old)
        await session.flush()
        pid = new_id()
        binding = AccountBinding(
            id=pid, account=account, status="pending", name=name,
            id_number_enc=protection.cipher.encrypt(resident_id.number, aad=f"svc_residents:account_bindings:{pid}"),
            id_number_bidx=bidx, id_number_masked=mask_id_number(resident_id.number), community_code=community,
            channel=channel, consent_text=consent_text, consented_at=now, gongan_message=(message or "")[:200] or None,
            requested_at=now)
        person = (await session.execute(select(Person).where(Person.id_number_bidx == bidx))).scalar_one_or_none()
        if person is not None:
            person = await _survivor(session, person)
            binding.status, binding.person_id, binding.decided_at, binding.decided_by = "bound", person.id, now, \
                "公安核验"
            binding.community_code = person.community_code
        session.add(binding)
        try:
            await session.flush()
        except IntegrityError:  # the same account or number bound by a parallel call: ask again
            raise Problem(409, "binding.conflict", ("实名认证正在办理，请重试", "A binding is under way; retry")) from None
        if person is not None:
            session.add(_consent(binding, person.id, now))
    return binding


def _visible(principal: Principal, b: AccountBinding) -> bool:
    if principal.member == GATEWAY_MEMBER and principal.role == "system":
        return True
    return principal.role in DECIDERS and (principal.role == "ops" or principal.covers_place(b.community_code))


async def get_binding(session: AsyncSession, principal: Principal, binding_id: str) -> AccountBinding:
    return await get_or_404(session, AccountBinding, binding_id,
                            Problem(404, "binding.not_found", ("实名认证申请不存在或无权查看", "Unknown binding")),
                            visible=lambda b: _visible(principal, b))


async def pending(session: AsyncSession, principal: Principal) -> list[AccountBinding]:
    if principal.role not in DECIDERS:
        raise Problem(403, "forbidden", ("只有社区、街道工作人员可以核实实名认证", "Only community or street staff decide"))
    rows = (await session.execute(select(AccountBinding).where(AccountBinding.status == "pending")
                                  .order_by(AccountBinding.requested_at))).scalars()
    return [b for b in rows if _visible(principal, b)]


async def decide(session: AsyncSession, principal: Principal, protection: FieldProtection, binding_id: str, *,
                 confirm: bool, household_id: str | None, residency_type: str | None, relation_to_head: str | None,
                 note: str | None, now: datetime) -> AccountBinding:
    if principal.role not in DECIDERS:
        raise Problem(403, "forbidden", ("只有社区、街道工作人员可以核实实名认证", "Only community or street staff decide"))
    b = await get_binding(session, principal, binding_id)
    if b.status != "pending":
        raise Problem(409, "binding.decided", ("该申请已处理", "This binding was decided already"),
                      extra={"status": b.status})
    if confirm:
        if not household_id:
            raise invalid("household_id", "binding.household_required", "确认时须指定居民所在的户",
                          "Name the household the person lives in")
        number = protection.cipher.decrypt(b.id_number_enc, aad=f"svc_residents:account_bindings:{b.id}")
        body = PersonCreate(household_id=household_id, name=b.name, id_number=number,
                            residency_type=residency_type or "resident", relation_to_head=relation_to_head)
        made = await create_person(session, principal, protection, body, now=now)
        if not isinstance(made, tuple):  # on record out of reach meanwhile: a registration of its own
            raise Problem(409, "binding.on_record", ("该身份证号已有档案，请按迁入登记办理",
                                                     "The number is on record elsewhere: register a move instead"))
        person = made[0]
        b.status, b.person_id = "bound", person.id
        session.add(_consent(b, person.id, now))
    else:
        b.status = "refused"
    b.decided_by, b.decided_at, b.note = principal.caller, now, note
    await session.flush()
    return b
