from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AttachmentOut(BaseModel):
    """A stored file of a request. `url` and `thumbnail_url` are served through the gateway, each read checked
    against the caller (the requester, the assignee, staff in scope); a purged file has neither."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    request_id: str
    kind: Literal["photo", "material"]
    material_code: str | None = None
    stage: str = Field(description="上传时诉求所处状态（如办结时的完工照片）")
    note: str | None
    media_type: str
    size: int
    width: int | None
    height: int | None
    uploaded_role: str
    created_at: datetime
    purged: bool = False
    url: str | None = None
    thumbnail_url: str | None = None


class MaterialReview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["verified", "rejected"] = Field(description="核验通过 verified / 退回 rejected")
    reason: str | None = Field(default=None, min_length=1, max_length=200, description="退回原因（退回时必填）")
