from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request

from common.deps import DbSession
from common.auth import Principal, get_principal
from common.idempotency import request_fingerprint
from svc_services.idempotency import run_once_outside_transaction
from svc_services.materials import service
from svc_services.materials.schemas import MaterialOut

router = APIRouter(prefix="/services/v1/requests", tags=["requests 诉求工单"])


def materials_out(rows, principal: Principal) -> list[MaterialOut]:
    out = [MaterialOut.model_validate(m) for m in rows]
    if principal.role not in service.DATA_READERS:
        for m in out:
            m.data = None
    return out


@router.get("/{request_id}/materials", response_model=list[MaterialOut],
            summary="所需材料：已调取（来源、时间）、待调取、待上传 Required materials and where they came from")
async def get_materials(session: DbSession, request_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return materials_out(await service.list_materials(session, principal, request_id), principal)


@router.post("/{request_id}/materials/fetch", response_model=list[MaterialOut],
             summary="调取材料（一次采集；失败后重试）Fetch the department-held materials now (retry)")
async def fetch_materials(request_id: str, request: Request, principal: Principal = Depends(get_principal),
                          idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    """With an Idempotency-Key, a retry gets the first answer back (what was fetched then) without asking the
    departments again; a new key fetches whatever is still pending."""

    async def work():
        return 200, materials_out(await service.fetch(request.app, principal, request_id), principal)

    return await run_once_outside_transaction(
        request.app, key=idempotency_key, caller=principal.caller,
        fingerprint=request_fingerprint("POST", request.url.path, None), work=work)
