"""Kiosk sign-in with the resident's ID card (自助服务一体机, issue 25).

Ops register each kiosk's card reader: its id, the kiosk's member code and the reader's Ed25519 public key
(`POST /auth/v1/kiosk/devices`). The kiosk, signed in with its own client credentials, sends what the reader read
and signed (gateway/accounts/card_reader.py: card number, name, chip serial, validity, read time, nonce) to
`POST /auth/v1/kiosk/sessions`. The gateway checks, in this order: the reader is registered and active (else 401
`kiosk.unknown_device`) and the calling kiosk's, called with its own token (else 403 `kiosk.not_this_kiosk`); the signature over the canonical reading (401
`kiosk.bad_signature`); the reading is at most `kiosk_reading_max_age_seconds` old and not from the future (422
`kiosk.stale_reading`); the nonce was never used by this reader (409 `kiosk.reading_replayed`, the nonce is
claimed before anything else is asked, so a reading works once whatever happens next); the card number's checksum
(422). Then the card is checked with 公安 through the exchange as real-name binding is (svc_residents'
account binding with channel `kiosk`: the resident presenting the card at the kiosk is the consent): an account
already bound to that number is the one signed in; else the card's own account (`card-…`, no password) is
made only once svc_residents bound it to the person on record (an account bound before is answered again
without a new 公安 query; the card's name must then be the one 公安 confirmed). No record: 404 `kiosk.no_record` (register at
the community's counter), nothing made. The session is the resident's, bound to the kiosk (its member, the
`kiosk_device` claim), `kiosk_session_seconds` long and ended after `kiosk_idle_seconds` without use (its access
tokens live that long, a refresh renews it) or by the kiosk's "done" button (`POST /auth/v1/sign-out` with the
session's token). Every refusal is in the account audit.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from common.auth import Principal, require_roles
from common.clock import local_date
from common.deps import AppClock, CurrentPrincipal
from common.errors import Problem, invalid
from common.validators import ValidationFailure, parse_resident_id
from gateway.accounts.audit import entry, record_refusal
from gateway.accounts.binding import ID_DOMAIN, _passed_on
from gateway.accounts.card_reader import canonical, public_key_of, unb64
from gateway.accounts.deps import Accounts, Source
from gateway.accounts.models import KioskDevice, KioskReading, ResidentAccount
from gateway.members.models import Member, User

router = APIRouter(prefix="/auth/v1/kiosk", tags=["auth 身份认证"])
KIOSK_CONSENT = ("本人在自助服务一体机刷身份证，同意平台将姓名与身份证号提交公安机关核验并关联居民档案。 "
                 "By presenting my ID card at the kiosk I agree that it is checked with the police.")


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]+$", examples=["kiosk-xf-01-reader"])
    member: str = Field(min_length=1, max_length=64, examples=["kiosk"], description="该一体机的成员单位代码")
    public_key: str = Field(min_length=40, max_length=100, description="阅读器 Ed25519 公钥（32 字节，base64url）")


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    member: str
    public_key: str
    status: str
    registered_by: str
    registered_at: datetime


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(max_length=64)
    card_number: str = Field(max_length=32, description="身份证号")
    name: str = Field(min_length=1, max_length=50)
    chip_serial: str = Field(min_length=1, max_length=64, description="芯片序列号")
    valid_until: str = Field(max_length=10, description="证件有效期至")
    read_at: str = Field(max_length=40, description="读卡时间（ISO-8601，带时区）")
    nonce: str = Field(min_length=16, max_length=64)


class SignedReading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reading: Reading
    signature: str = Field(min_length=1, max_length=200, description="阅读器对规范化读卡数据的 Ed25519 签名")


class KioskSession(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    session_id: str
    person_id: str
    kiosk_device: str


@router.post("/devices", status_code=201, response_model=DeviceOut, summary="登记一体机读卡器 Register a card reader")
async def register_device(body: DeviceIn, parts: Accounts, clock: AppClock,
                          principal: Principal = Depends(require_roles("ops"))):
    try:
        public_key_of(body.public_key)
    except ValueError:
        raise invalid("public_key", "kiosk.bad_key", "不是有效的 Ed25519 公钥", "Not an Ed25519 public key") from None
    now = clock.now()
    async with parts.db.session() as session, session.begin():
        member = await session.get(Member, body.member)
        if member is None or member.status != "active":
            raise invalid("member", "kiosk.unknown_member", "成员单位不存在或已停用", "Unknown or revoked member")
        if await session.get(KioskDevice, body.id) is not None:
            raise Problem(409, "kiosk.device_exists", ("该读卡器已登记", "This reader is registered already"))
        device = KioskDevice(id=body.id, member=body.member, public_key=body.public_key, status="active",
                             registered_by=principal.user, registered_at=now)
        session.add(device)
        session.add(entry(now=now, actor=principal.user, actor_role=principal.role, action="kiosk.register",
                          target=body.id, after={"member": body.member, "public_key": body.public_key}))
    return DeviceOut.model_validate(device)


def card_username(id_bidx: str) -> str:
    """The account of a card with no other account bound to its number (no password: it signs in by card only)."""
    return "card-" + hashlib.sha256(id_bidx.encode()).hexdigest()[:24]


def _refuse(status: int, code: str, field: str, zh: str, en: str) -> Problem:
    return invalid(field, code, zh, en, status=status)


async def _verify(parts, principal: Principal, body: SignedReading, now: datetime) -> None:
    r = body.reading
    async with parts.db.session() as session:
        device = await session.get(KioskDevice, r.device_id)
    if device is None or device.status != "active":
        raise _refuse(401, "kiosk.unknown_device", "reading.device_id", "读卡器未登记或已停用",
                      "Unknown or revoked reader")
    if device.member != principal.member or principal.user != principal.member:  # only that kiosk, as itself
        raise _refuse(403, "kiosk.not_this_kiosk", "reading.device_id", "该读卡器不属于本一体机",
                      "This reader is not the calling kiosk's")
    try:
        public_key_of(device.public_key).verify(unb64(body.signature), canonical(r.model_dump()))
    except (InvalidSignature, ValueError):
        raise _refuse(401, "kiosk.bad_signature", "signature", "读卡数据签名无效",
                      "The reading's signature does not verify") from None
    try:
        read_at = datetime.fromisoformat(r.read_at)
        age = (now - read_at).total_seconds()
    except (ValueError, TypeError):
        age = None
    if age is None or age > parts.settings.kiosk_reading_max_age_seconds or age < -5:
        raise _refuse(422, "kiosk.stale_reading", "reading.read_at", "读卡数据已过期，请重新刷卡",
                      "The reading is stale; read the card again")
    try:  # claimed first: a reading works once, whatever happens next
        async with parts.db.session() as session, session.begin():
            session.add(KioskReading(device_id=r.device_id, nonce=r.nonce, read_at=read_at, used_at=now))
    except IntegrityError:
        raise Problem(409, "kiosk.reading_replayed", ("该读卡数据已使用过（重放）", "This reading was used already")) \
            from None


async def _account(parts, r: Reading, number: str, now: datetime, lang: str | None) -> tuple[User, str]:
    """The account the card signs in: one already bound to the number, else the card's own, made once bound."""
    bidx = parts.phone.protection.blind_index.digest(number, domain=ID_DOMAIN)
    async with parts.db.session() as session:
        acc = (await session.execute(select(ResidentAccount).where(
            ResidentAccount.id_number_bidx == bidx, ResidentAccount.binding == "bound"))).scalar_one_or_none()
        username = acc.username if acc is not None else card_username(bidx)
    resp = await parts.binder.call("POST", "/residents/v1/account-bindings", lang=lang, json={
        "account": username, "name": r.name.strip(), "id_number": number, "consent": True,
        "consent_text": KIOSK_CONSENT, "channel": "kiosk"})
    if resp.status_code == 422 and (resp.json().get("errors") or [{}])[0].get("code") == "binding.community_required":
        raise Problem(404, "kiosk.no_record", ("没有您的居民档案，请到社区窗口登记", "No record holds this card; "
                                               "register at the community's counter"))
    if resp.status_code == 422:
        p = _passed_on(resp)
        p.errors = [{**e, "field": "reading.name" if e.get("field") == "name" else "reading.card_number"}
                    for e in (p.errors or [])]
        raise p
    if resp.status_code not in (200, 202):
        raise _passed_on(resp)
    answer = resp.json()
    if answer.get("name") and answer["name"] != r.name.strip():
        # the account was bound before (svc_residents answers it again without asking 公安): the card's name must
        # be the one 公安 confirmed then
        raise invalid("reading.name", "identity.not_confirmed", "姓名与公安核验的不一致",
                      "The name is not the one the police confirmed")
    if answer.get("status") != "bound" or not answer.get("person_id"):
        raise Problem(404, "kiosk.no_record", ("没有您的居民档案，请到社区窗口登记", "No record holds this card"))
    scopes = [f"person:{answer['person_id']}"] + ([f"household:{answer['household_id']}"]
                                                  if answer.get("household_id") else [])
    async with parts.db.session() as session, session.begin():
        user = await session.get(User, username)
        if user is None:
            user = User(username=username, display_name=r.name.strip(), password_hash="!card", role="resident",
                        scopes=scopes, member_code="portal", status="active", created_at=now, version=1,
                        updated_at=now)
            session.add(user)
            session.add(entry(now=now, actor=username, actor_role="resident", action="account.register",
                              target=username, after={"via": "idcard", "person_id": answer["person_id"]}))
    return user, answer["person_id"]


@router.post("/sessions", status_code=201, response_model=KioskSession,
             summary="一体机刷身份证登录 Kiosk sign-in with an ID card",
             description="一体机（以其成员单位令牌）提交读卡器签名的读卡数据；网关验签、核对时效与重放，经数据交换由公安"
                         "核验后为该居民开启绑定本一体机的短时会话。“办理完毕”即 POST /auth/v1/sign-out。")
async def kiosk_sign_in(body: SignedReading, parts: Accounts, source: Source, clock: AppClock,
                        principal: CurrentPrincipal):
    now, r = clock.now(), body.reading
    try:
        await _verify(parts, principal, body, now)
        try:
            number = parse_resident_id(r.card_number.strip(), today=local_date(now)).number
        except ValidationFailure as exc:
            raise invalid("reading.card_number", exc.code, exc.message_zh, exc.message_en) from None
        user, person = await _account(parts, r, number, now, None)
        if user.status != "active":
            raise Problem(403, "account.disabled", ("账号已停用，请联系社区", "The account is disabled"))
    except Problem as p:
        await record_refusal(parts.db, now=now, actor=principal.user, actor_role=principal.role,
                             action="kiosk.sign_in", target=r.device_id, code=p.code if p.code != "validation_failed"
                             else (p.errors or [{}])[0].get("code", p.code), source=source)
        raise
    s = parts.settings
    out = await parts.sessions.start(user, principal.member, now, source=source, user_agent=f"kiosk/{r.device_id}",
                                     mfa=False, amr=["sc"], kiosk_device=r.device_id,
                                     lifetime=timedelta(seconds=s.kiosk_session_seconds))
    return KioskSession(access_token=out["access_token"], expires_in=out["expires_in"],
                        refresh_token=out["refresh_token"], session_id=out["session_id"], person_id=person,
                        kiosk_device=r.device_id)
