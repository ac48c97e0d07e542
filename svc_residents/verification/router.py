from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from common.deps import AppClock, AppDb, CurrentPrincipal, DbSession
from svc_residents.clients import DepartmentClients, ServiceToken
from svc_residents.protection import AppProtection
from svc_residents.verification import service

router = APIRouter(prefix="/residents/v1/persons", tags=["verification 一次采集核验"])

DepartmentCode = Literal["gongan", "minzheng", "canlian", "weijian", "renshe"]


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    departments: list[DepartmentCode] | None = Field(
        default=None, max_length=5, description="要询问的部门；省略为全部（公安、民政、残联、卫健、人社）")
    refresh: bool = Field(default=False, description="已核验完成的部门也重新询问")


class VerificationOut(BaseModel):
    id: str
    department: str
    department_name: str
    status: Literal["done", "pending", "refused", "failed"]
    retryable: bool
    attempts: int
    reason: str | None
    result: dict[str, Any] | None
    requested_by: str
    created_at: datetime
    updated_at: datetime
    answered_at: datetime | None


class VerificationsOut(BaseModel):
    person_id: str
    complete: bool = Field(description="所有已询问的部门都已核验完成")
    verifications: list[VerificationOut]


def _out(person_id: str, rows) -> VerificationsOut:
    items = [VerificationOut(**service.verification_out(v)) for v in rows]
    return VerificationsOut(person_id=person_id, complete=all(v.status == "done" for v in items),
                            verifications=items)


@router.post("/{person_id}/verifications", response_model=VerificationsOut,
             summary="向部门核验（一次采集）Verify with the owning departments; POST again retries what is not done")
async def verify(person_id: str, db: AppDb, protection: AppProtection, clients: DepartmentClients,
                 provider: ServiceToken, principal: CurrentPrincipal, clock: AppClock, body: VerifyIn | None = None):
    body = body or VerifyIn()
    rows = await service.verify(db, protection, principal, person_id, body.departments, body.refresh,
                                clients=clients, provider=provider, clock=clock)
    return _out(person_id, rows)


@router.get("/{person_id}/verifications", response_model=VerificationsOut, summary="核验记录 Verification records")
async def list_verifications(session: DbSession, person_id: str, principal: CurrentPrincipal):
    rows = await service.list_verifications(session, principal, person_id)
    return _out(person_id, rows)
