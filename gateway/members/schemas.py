from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.identity.mtls import fingerprint_pem, normalise_fingerprint

MemberKind = Literal["department", "community", "app", "service", "emulator"]


FP_EXAMPLE = "3f7a0c9e5b1d4a2f8e6c0b9d7a5f3e1c2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a"


class _ClientCertificate(BaseModel):
    """Optional mutual-TLS identity: the client certificate's SHA-256 fingerprint, or the certificate (PEM) itself
    from which the gateway computes it. `client_cert_sha256: null` on an update removes it."""

    client_cert_sha256: str | None = Field(
        default=None, examples=[FP_EXAMPLE],
        description="客户端证书 SHA-256 指纹（十六进制，可带冒号）；设置后该成员单位取令牌和调用都须出示此证书 "
                    "SHA-256 of the client certificate (hex, colons allowed); once set, the member's token requests "
                    "and calls must present that certificate")
    client_cert_pem: str | None = Field(default=None, max_length=20_000,
                                        description="或直接提供证书（PEM），由网关计算指纹 Or the certificate (PEM)")

    @field_validator("client_cert_sha256")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        if v is None:
            return None
        fp = normalise_fingerprint(v)
        if fp is None:
            raise ValueError("应为 64 位十六进制 SHA-256 指纹 / expected a SHA-256 fingerprint (64 hex digits)")
        return fp

    @model_validator(mode="after")
    def _from_pem(self):
        if self.client_cert_pem is not None:
            fp = fingerprint_pem(self.client_cert_pem)
            if fp is None:
                raise ValueError("client_cert_pem: 不是有效的 PEM 证书 / not a PEM certificate")
            if self.client_cert_sha256 is not None and self.client_cert_sha256 != fp:
                raise ValueError("client_cert_sha256 与 client_cert_pem 不一致 / the fingerprint does not match the PEM")
            self.client_cert_sha256 = fp
        return self


class MemberCreate(_ClientCertificate):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_\-]{1,63}$", examples=["dept-minzheng"])
    name: str = Field(min_length=1, max_length=100, examples=["区民政局"])
    kind: MemberKind
    role: Literal["system", "dept_staff", "community_staff"] = "system"
    scopes: list[str] = Field(default_factory=list, max_length=50)


class MemberUpdate(_ClientCertificate):
    """Only the fields sent change; `client_cert_sha256: null` removes the mutual-TLS requirement."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"client_cert_sha256": FP_EXAMPLE}, {"client_cert_sha256": None}, {"name": "区民政局（新）"}]})

    name: str | None = Field(default=None, min_length=1, max_length=100)
    scopes: list[str] | None = Field(default=None, max_length=50)


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
    client_cert_sha256: str | None = Field(default=None, description="登记的客户端证书指纹（双向 TLS）")


class MemberCredentials(BaseModel):
    member: MemberOut
    client_id: str
    client_secret: str = Field(description="只显示这一次；平台只保存其哈希 Shown once; only its hash is stored")
