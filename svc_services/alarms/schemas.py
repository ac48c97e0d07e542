from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from common.validators import GridCode


class AlarmIn(BaseModel):
    """A device's alarm as svc_residents' `alarm.` feed sends it (svc_residents.devices.feed)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                            description="svc_residents 为该报警预留的诉求编号（UUID）")
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    device_kind: str = Field(min_length=1, max_length=24)
    event_id: str = Field(min_length=1, max_length=64)
    person_id: str | None = Field(default=None, max_length=36)
    household_id: str | None = Field(default=None, max_length=36)
    grid: GridCode
    address: str | None = Field(default=None, max_length=200)
    description: str = Field(min_length=1, max_length=200)
    raised_at: AwareDatetime
    device_time: AwareDatetime | None = None
    version: int = Field(default=1, ge=1)
