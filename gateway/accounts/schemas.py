from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

StaffRole = Literal["grid_worker", "community_staff", "street_staff", "dept_staff", "provider", "evaluator", "ops"]
USERNAME = r"^[a-z][a-z0-9_.\-]{2,63}$"


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME, examples=["grid-xf-02"])
    display_name: str = Field(min_length=1, max_length=100, examples=["李娜（幸福二网格网格员）"])
    role: StaffRole
    scopes: list[str] = Field(default_factory=list, max_length=20, examples=[["grid:110105001001002"]])
    admin: bool = False
    password: str = Field(min_length=1, max_length=256, description="初始密码（须符合密码策略） Initial password")


class AccountUpdate(BaseModel):
    """Only the fields sent change; `version` is the version you saw (a stale one is 409)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    role: StaffRole | None = None
    scopes: list[str] | None = Field(default=None, max_length=20)
    admin: bool | None = None
    status: Literal["active", "disabled"] | None = None
    password: str | None = Field(default=None, min_length=1, max_length=256,
                                 description="由管理员重设密码 A new password set by the administrator")


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    display_name: str
    role: str
    scopes: list[str]
    admin: bool
    status: str
    version: int
    created_at: datetime
    updated_at: datetime | None = None
    mfa_enrolled: bool = False


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    at: datetime
    actor: str
    actor_role: str
    action: str
    target: str | None
    place: str | None
    outcome: str
    code: str | None
    source: str | None
    before: dict | None
    after: dict | None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    member: str
    source: str | None
    user_agent: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    mfa: bool
    current: bool = False


class TotpEnrolment(BaseModel):
    secret: str = Field(description="Base32 密钥（只显示这一次） shown once")
    otpauth_uri: str
    digits: int = 6
    period: int = 30


class TotpActivate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=12, examples=["123456"])


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="每个只能用一次，只显示这一次 one use each, shown once")


class SignedOut(BaseModel):
    revoked_sessions: list[str]
