from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MemberKind = Literal["department", "community", "app", "service", "emulator"]


class MemberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_\-]{1,63}$", examples=["dept-minzheng"])
    name: str = Field(min_length=1, max_length=100, examples=["区民政局"])
    kind: MemberKind
    role: Literal["system", "dept_staff", "community_staff"] = "system"
    scopes: list[str] = Field(default_factory=list, max_length=50)


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    kind: MemberKind
    role: str
    scopes: list[str]
    status: str
    created_at: datetime
    secret_rotated_at: datetime | None


class MemberCredentials(BaseModel):
    member: MemberOut
    client_id: str
    client_secret: str = Field(description="只显示这一次；平台只保存其哈希 Shown once; only its hash is stored")
