from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from common.deps import AppClock, AppDb, AppSettings, CurrentPrincipal
from svc_services.clients import MatchingClient
from svc_services.dispatch import service

router = APIRouter(prefix="/services/v1/requests", tags=["requests 诉求工单"])


@router.get("/{request_id}/candidates",
            summary="派单推荐：svc_matching 给出的前 k 名服务方及理由 Recommended providers with reasons")
async def get_candidates(request_id: str, db: AppDb, settings: AppSettings, clock: AppClock,
                         client: MatchingClient, principal: CurrentPrincipal,
                         k: int | None = Query(None, ge=1, le=50, description="推荐数量，默认见配置")) -> dict[str, Any]:
    """`available: false` (HTTP 200) when svc_matching is down or gives no recommendation: dispatch manually
    (`assignee`). Otherwise dispatch one with `{"action": "dispatch", "candidate_rank": n}`."""
    return await service.candidates(db, settings, clock, client, principal, request_id, k)
