from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from common.deps import DbSession
from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from svc_residents.identity import service
from svc_residents.protection import AppProtection
from svc_residents.persons.schemas import PersonOut
from svc_residents.persons.service import person_out, tags_for

router = APIRouter(prefix="/residents/v1/persons", tags=["identity 身份归一与合并"])


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duplicate_id: str = Field(max_length=36, description="要并入本档案的重复档案")
    reason: str = Field(min_length=1, max_length=200, description="合并理由", examples=["纸质台账录入时身份证号输错"])


class MergeOut(BaseModel):
    person: PersonOut
    merged: PersonOut


class ChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    person_id: str
    field: str
    change: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    source: str
    actor: str
    verification_id: str | None
    occurred_at: datetime


@router.post("/{person_id}/merge", response_model=MergeOut,
             summary="合并重复档案（一人多档）Merge a duplicate record into this one")
async def merge(session: DbSession, person_id: str, body: MergeIn, protection: AppProtection, principal: Principal = Depends(get_principal),
                clock: Clock = Depends(get_clock)):
    now = clock.now()
    async with session.begin():
        survivor, dup = await service.merge(session, principal, protection, person_id,
                                            body.duplicate_id, body.reason.strip(), now=now)
        tags = await tags_for(session, [survivor.id, dup.id])
        return MergeOut(person=person_out(survivor, tags.get(survivor.id, []), now=now),
                        merged=person_out(dup, tags.get(dup.id, []), now=now))


@router.get("/{person_id}/changes", response_model=list[ChangeOut],
            summary="变更记录（部门核验、合并）Change history")
async def changes(session: DbSession, person_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return [ChangeOut.model_validate(c) for c in await service.changes(session, principal, person_id)]
