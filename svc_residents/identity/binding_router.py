"""Accounts' real-name bindings (svc_residents/identity/binding.py): asked by the gateway for a resident, decided
by the community's staff when no record holds the number."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from common.deps import AppClock, CurrentPrincipal, DbSession, state
from common.validators import CommunityCode
from svc_residents.codes import ResidencyType
from svc_residents.identity import binding as service
from svc_residents.protection import FieldProtection
from svc_residents.registrations.schemas import DecisionIn as StaffDecisionIn

router = APIRouter(prefix="/residents/v1/account-bindings", tags=["identity 身份归一与合并"])
Protection = Annotated[FieldProtection, state("protection")]


class BindingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1, max_length=64, description="网关的居民账号")
    name: str = Field(min_length=1, max_length=50, examples=["黄磊"])
    id_number: str = Field(min_length=1, max_length=32, examples=["110105197511300713"])
    consent: bool = Field(description="本人同意由公安核验姓名与身份证号")
    consent_text: str = Field(min_length=1, max_length=300, description="居民同意的告知文本")
    channel: Literal["app", "kiosk", "counter"] = "app"
    community: CommunityCode | None = Field(default=None, description="没有档案时：居住的社区（12 位代码）")


class BindingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    account: str
    status: Literal["bound", "pending", "refused"] = Field(description="bound 已绑定 / pending 待社区核实 / refused 未予确认")
    name: str
    id_number_masked: str
    person_id: str | None
    household_id: str | None = None
    community_code: str | None
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    note: str | None


# staff decide a binding as they decide a registration (the same note); confirming also places the person
class DecisionIn(StaffDecisionIn):
    household_id: str | None = Field(default=None, max_length=36, description="确认时：居民所在的户")
    residency_type: ResidencyType | None = None
    relation_to_head: str | None = Field(default=None, max_length=20)


async def _out(session, b) -> BindingOut:
    from svc_residents.persons.models import Person

    out = BindingOut.model_validate(b)
    if b.person_id:
        person = await session.get(Person, b.person_id)
        out.household_id = person.household_id if person else None
    return out


@router.post("", response_model=BindingOut, summary="账号实名认证（网关发起） Bind an account to its person",
             responses={202: {"model": BindingOut, "description": "没有档案：待社区核实"}})
async def bind(body: BindingIn, request: Request, session: DbSession, principal: CurrentPrincipal,
               protection: Protection, clock: AppClock):
    b = await service.bind(request.app, session, principal, protection, account=body.account, name=body.name,
                           id_number=body.id_number, consent=body.consent, consent_text=body.consent_text,
                           channel=body.channel, community=body.community, now=clock.now())
    out = await _out(session, b)
    return JSONResponse(out.model_dump(mode="json"), status_code=200 if b.status == "bound" else 202)


@router.get("", response_model=list[BindingOut], summary="待核实的实名认证 Bindings waiting for the community")
async def pending(session: DbSession, principal: CurrentPrincipal):
    return [await _out(session, b) for b in await service.pending(session, principal)]


@router.get("/{binding_id}", response_model=BindingOut, summary="查看实名认证 Read a binding")
async def read(binding_id: str, session: DbSession, principal: CurrentPrincipal):
    return await _out(session, await service.get_binding(session, principal, binding_id))


async def _decide(binding_id, body, session, principal, protection, clock, confirm: bool) -> BindingOut:
    async with session.begin():
        b = await service.decide(session, principal, protection, binding_id, confirm=confirm,
                                 household_id=body.household_id, residency_type=body.residency_type,
                                 relation_to_head=body.relation_to_head, note=body.note, now=clock.now())
        return await _out(session, b)


@router.post("/{binding_id}/confirm", response_model=BindingOut,
             summary="确认：在该户建立居民档案 Confirm: make the person's record in a household")
async def confirm(binding_id: str, body: DecisionIn, session: DbSession, principal: CurrentPrincipal,
                  protection: Protection, clock: AppClock):
    return await _decide(binding_id, body, session, principal, protection, clock, True)


@router.post("/{binding_id}/refuse", response_model=BindingOut, summary="不予确认 Refuse")
async def refuse(binding_id: str, body: DecisionIn, session: DbSession, principal: CurrentPrincipal,
                 protection: Protection, clock: AppClock):
    return await _decide(binding_id, body, session, principal, protection, clock, False)
