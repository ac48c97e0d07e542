from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class EntryIn(BaseModel):
    """One step of svc_residents' call-out (a call attempt, or the acknowledgement), as its feed sends it."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=36)
    kind: Literal["call", "acknowledge"]
    step: int = Field(ge=0, le=10_000)
    duty: Literal["grid_worker", "backup_worker", "community_duty", "street_duty"]
    targets: list[dict] = Field(default_factory=list, max_length=20)
    channels: list[Literal["voice", "sms", "push", "app"]] = Field(default_factory=list, max_length=4)
    outcome: Literal["called", "nobody_on_duty", "acknowledged"]
    actor: str | None = Field(default=None, max_length=64, description="应答人账号（应答时）")
    role: Literal["grid_worker", "community_staff", "street_staff"] | None = None
    note: str | None = Field(default=None, max_length=200)
    occurred_at: AwareDatetime
    version: int | None = Field(default=None, ge=1)
