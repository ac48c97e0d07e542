from __future__ import annotations

from fastapi import APIRouter, Depends, File, Path, Request, UploadFile

from common.acting import acts
from common.app import problem_responses
from common.deps import AppClock, AppDb, CurrentPrincipal, DbSession
from common.auth import Principal, get_principal
from svc_services.attachments.router import AppProtection, AppStore, read_upload
from svc_services.attachments.schemas import MaterialReview
from svc_services.deps import Idempotent
from svc_services.idempotency import run_once_outside_transaction
from svc_services.materials import service, uploads
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
async def fetch_materials(request_id: str, request: Request, idem: Idempotent,
                          principal: Principal = Depends(get_principal)):
    """With an Idempotency-Key, a retry gets the first answer back (what was fetched then) without asking the
    departments again; a new key fetches whatever is still pending."""

    async def work():
        return 200, materials_out(await service.fetch(request.app, principal, request_id), principal)

    return await run_once_outside_transaction(idem, None, work)


Code = Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$", description="材料代码")


@router.post("/{request_id}/materials/{code}/upload", status_code=201, response_model=MaterialOut,
             dependencies=[acts("requests.submit")],
             responses=problem_responses(404, 409, 413, 415, 422, 503),
             summary="上传材料文件（图片或 PDF，≤ 20 MiB，加密保存）→ uploaded Upload the file of a required material")
async def upload_material(request_id: str, db: AppDb, store: AppStore, protection: AppProtection, clock: AppClock,
                          principal: CurrentPrincipal, code: str = Code,
                          file: UploadFile = File(description="JPEG、PNG、WebP 或 PDF，≤ 20 MiB")):
    upload = await read_upload("material", file)
    m = await uploads.upload(db, store, protection, principal, request_id, code, upload=upload, now=clock.now())
    return materials_out([m], principal)[0]


@router.post("/{request_id}/materials/{code}/review", response_model=MaterialOut,
             responses=problem_responses(404, 409, 422),
             summary="核验材料：通过 verified / 退回 rejected（须说明原因）Review an uploaded material")
async def review_material(request_id: str, body: MaterialReview, session: DbSession, clock: AppClock,
                          principal: CurrentPrincipal, code: str = Code):
    m = await uploads.review(session, principal, request_id, code, body.decision, body.reason, now=clock.now())
    return materials_out([m], principal)[0]
