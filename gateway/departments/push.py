"""The emulated app-push provider among the department emulators.

A member system pushes a title and text to an app user by alias (`POST /departments/push/v1/messages`; the
alias is the recipient's key, `person:<id>` or `user:<username>`, which the app registers at sign-in) and reads
its receipt (`GET /departments/push/v1/messages/{id}`). Many at once, as push providers take many device tokens a
call: `POST /departments/push/v1/batches` (up to 500 aliases, one title and text or each its own; per message its
id or `failed`) and `POST /departments/push/v1/receipts/query`. Knobs, idempotency by `ref` and the batch's
rules: gateway/departments/outbound.py (`ONENET_PUSH_…`) and delivery.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from common.clock import Clock, get_clock
from common.deps import state
from common.ids import new_id
from gateway.departments import delivery
from gateway.departments.delivery import Sender
from gateway.departments.outbound import (BATCH_MAX, BatchOut, OutboundSettings, Platform, ReceiptsQuery, Sent,
                                          batch_texts)


class PushSettings(OutboundSettings):
    model_config = SettingsConfigDict(env_prefix="ONENET_PUSH_", extra="ignore")


class PushIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=3, max_length=100, pattern=r"^(person|user):\S+$", examples=["user:grid1"])
    title: str = Field(min_length=1, max_length=100)
    text: str = Field(min_length=1, max_length=500)
    ref: str | None = Field(default=None, max_length=80, description="发送方的引用号：同一引用号只推送一次")


class PushItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=3, max_length=100, pattern=r"^(person|user):\S+$")
    title: str | None = Field(default=None, min_length=1, max_length=100, description="不填用整批的 title")
    text: str | None = Field(default=None, min_length=1, max_length=500, description="不填用整批的 text")
    ref: str | None = Field(default=None, max_length=80, description="发送方的引用号：同一引用号只推送一次")


class PushBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=100, description="整批的标题")
    text: str | None = Field(default=None, min_length=1, max_length=500, description="整批的内容")
    messages: list[PushItem] = Field(min_length=1, max_length=BATCH_MAX, description="至多 500 条")


class PushOut(BaseModel):
    id: str
    status: str = Field(description="delivered 已送达 / pending 待回执 / failed 未送达（回执）")
    alias: str
    submitted_at: datetime


class PushRead(PushOut):
    title: str
    text: str


router = APIRouter(prefix="/departments/push/v1", tags=["departments 部门模拟"])
Provider = Annotated[Platform, state("push")]


def _out(m: Sent) -> PushOut:
    return PushOut(id=m.id, status=m.status, alias=m.to, submitted_at=m.submitted_at)


@router.post("/messages", status_code=202, response_model=PushOut, summary="应用推送 Push to an app user")
async def push(body: PushIn, provider: Provider, principal: Sender, clock: Clock = Depends(get_clock)):
    return _out(delivery.send_one(provider, principal.member, body.ref, lambda: Sent(
        id=new_id(), member=principal.member, to=body.alias, title=body.title, text=body.text, ref=body.ref,
        submitted_at=clock.now(), status="delivered")))


@router.post("/batches", response_model=BatchOut, summary="批量推送 Push to many app users in one call")
async def push_batch(body: PushBatchIn, provider: Provider, principal: Sender, clock: Clock = Depends(get_clock)):
    texts = batch_texts([m.text for m in body.messages], body.text)
    now = clock.now()

    def message(item: PushItem, text: str):
        title = item.title if item.title is not None else body.title or ""
        return lambda: Sent(id=new_id(), member=principal.member, to=item.alias, title=title, text=text, ref=item.ref,
                            submitted_at=now, status="delivered")

    return delivery.send_batch(provider, principal.member, [(item.ref, message(item, text))
                                                            for item, text in zip(body.messages, texts)])


@router.post("/receipts/query", response_model=list[PushOut], summary="批量查询推送回执 Receipts of many pushes")
async def receipts(body: ReceiptsQuery, provider: Provider, principal: Sender):
    return [_out(m) for m in provider.known(principal.member, body.ids)]


@router.get("/messages/{message_id}", response_model=PushOut, summary="推送回执 Push receipt")
async def receipt(message_id: str, provider: Provider, principal: Sender):
    return _out(provider.own(principal.member, message_id))


@router.get("/testing/messages", response_model=list[PushRead], include_in_schema=False,
            summary="测试用：推送给某别名的消息 Tests only: the pushes to an alias")
async def pushes_to(provider: Provider, principal: Sender, to: str = Query(min_length=3, max_length=100)):
    return [PushRead(id=m.id, status=m.status, alias=m.to, submitted_at=m.submitted_at, title=m.title or "",
                     text=m.text) for m in provider.to(to)]


def install(app, settings: PushSettings | None = None) -> None:
    app.state.push = Platform("push", settings or PushSettings())
