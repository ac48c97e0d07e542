"""Publishing a request's description on the public Open311 feed (issue 23, finding 6).

Numbers are masked automatically on every public read (`open311.service.scrub`). A name, a home address or a
neighbour's illness typed in free text is for a person to see, so a description is public only once staff of the
request's area (community or street staff covering its grid) or ops have read it and published it, edited if
need be. The requests of a personal catalogue item are never published, nor those of the categories the feed
does not list at all (`open311_hidden_categories`).
"""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal, require_roles
from common.deps import AppClock, AppSettings, DbSession
from common.errors import Problem
from svc_services.open311 import service as o311
from svc_services.open311.models import RequestPublication
from svc_services.requests.models import ServiceRequest
from svc_services.requests.schemas import MAX_DESCRIPTION
from svc_services.requests.access import UNSEEN
from svc_services.settings import ServicesSettings

router = APIRouter(prefix="/services/v1/requests", tags=["open311 GeoReport v2"])
PUBLISHERS = ("community_staff", "street_staff", "ops")
# plain text: line breaks and tabs, no other control characters (GeoReport: "may contain line breaks")
_PLAIN_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class PublicationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(max_length=MAX_DESCRIPTION, pattern=_PLAIN_TEXT,
                                    description="公开的描述：工作人员核对后的文字（可删去姓名、住址等）；null 撤回公开")


class PublicationOut(BaseModel):
    request_id: str
    description: str | None = Field(description="公开接口展示的描述（手机号、身份证号已遮蔽）；null 为不公开")
    approved_by: str
    approved_role: str
    approved_at: datetime


def publication_out(pub: RequestPublication) -> PublicationOut:
    return PublicationOut(request_id=pub.request_id, description=o311.public_description(False, pub),
                          approved_by=pub.approved_by, approved_role=pub.approved_role, approved_at=pub.approved_at)


async def set_publication(session: AsyncSession, principal: Principal, request_id: str, text: str | None,
                          settings: ServicesSettings, now: datetime) -> RequestPublication:
    req = await session.get(ServiceRequest, request_id)
    if req is None or not principal.covers_place(req.grid):
        raise UNSEEN
    personal_item = (await o311.item_facts(session, [req]))[req.id][1]
    if personal_item or not o311.is_public(req, settings):
        raise Problem(409, "publication.personal",
                      ("该事项涉及居民个人事务，其诉求描述不在公开接口发布",
                       "Requests of this item are personal: their descriptions are never published"))
    pub = await session.get(RequestPublication, req.id)
    if pub is None:
        pub = RequestPublication(request_id=req.id)
        session.add(pub)
    pub.description = (text or "").strip() or None
    pub.approved_by, pub.approved_role, pub.approved_at = principal.caller, principal.role, now
    await session.flush()
    return pub


@router.put("/{request_id}/publication", response_model=PublicationOut,
            summary="公开诉求描述（Open311） Publish a request's description on the public feed")
async def publish(request_id: str, body: PublicationIn, session: DbSession, settings: AppSettings, clock: AppClock,
                  principal: Principal = Depends(require_roles(*PUBLISHERS))):
    async with session.begin():
        pub = await set_publication(session, principal, request_id, body.description, settings, clock.now())
        return publication_out(pub)
