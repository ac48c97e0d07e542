from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from common.validators import AreaCode

STATE = r"^[a-z_]{1,24}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepIn(_In):
    """One step of the booking's own history (svc_matching's booking entries)."""

    seq: int = Field(ge=1, le=10_000)
    action: str = Field(pattern=r"^[a-z_]{1,24}$", examples=["reschedule"])
    from_state: str | None = Field(default=None, pattern=STATE)
    to_state: str = Field(pattern=STATE)
    starts_at: AwareDatetime = Field(description="该步之后的时段开始")
    at: AwareDatetime
    actor: str = Field(min_length=1, max_length=160)
    role: str = Field(min_length=1, max_length=32)
    note: str | None = Field(default=None, max_length=300)


class AppointmentSnapshot(_In):
    """The booking as svc_matching holds it now, with every step so far (a full snapshot: the feed sends only
    the newest of a batch, so the steps travel with it)."""

    request_id: str = Field(min_length=1, max_length=64)
    resource_id: str = Field(min_length=1, max_length=36)
    resource_name: str = Field(min_length=1, max_length=200)
    place_code: AreaCode
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    state: str = Field(pattern=STATE)
    version: int = Field(ge=1, le=2**31 - 1, description="预约的版本号（svc_matching 逐步递增）；不大于已存版本的更新被忽略")
    history: list[StepIn] = Field(min_length=1, max_length=500)


class AppointmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    booking_id: str
    request_id: str
    resource_id: str
    resource_name: str
    place_code: str
    starts_at: datetime
    ends_at: datetime
    state: str
    version: int
    updated_at: datetime
