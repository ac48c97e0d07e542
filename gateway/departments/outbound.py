"""What the emulated outbound platforms (短信 sms.py, 语音外呼 voice.py, app push push.py) share: fault knobs, an
in-memory store of the last 50,000 messages, idempotency by the sender's reference, the test-only read, and the
shape of a batch call.

Knobs (env `ONENET_<PLATFORM>_…`, or on `app.state.<platform>` from a test): `failure_rate` fails that fraction of
sends with 503, `down` fails them all; voice also has `no_answer_rate` (the call is placed but nobody answers:
its receipt says `no_answer`); SMS and push have `receipt_failure_rate` (the message is taken, its receipt says
`failed`: the handset was not reached) and `receipt_pending_rate` (its receipt stays `pending`: the operator's
receipt never comes). A send naming a `ref` the same member sent before answers the first message again
without sending a second one, so a sender that lost the answer and retries reaches the person once.
`test_reads` (tests and `onenet up` only) adds `GET …/testing/messages?to=…`.

A batch call (SMS and push, as real gateways take a list of numbers or device tokens a call) names up to
`BATCH_MAX` messages, each with its own text or the batch's one text; bad input (too many, a bad number, a message
without a text) is a 422 naming the field and sends nothing. The platform down answers 503 for the whole call;
`failure_rate` fails each message on its own, so the answer says per message whether it was taken (its id, for
its receipt) or not (`failed`, to be sent again). A message whose `ref` the member sent before answers that one.
Receipts of many messages are read in one call too (`…/receipts/query`).
"""
from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings

from common.errors import Problem, invalid

KEEP = 50_000  # messages a platform remembers (receipts, refs): more than a broadcast's 10,000
BATCH_MAX = 500  # messages a batch call, and ids a receipts query


class OutboundSettings(BaseSettings):
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    down: bool = False
    no_answer_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    receipt_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    receipt_pending_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    test_reads: bool = False
    seed: int = 0


@dataclass
class Sent:
    id: str
    member: str
    to: str
    title: str | None
    text: str
    ref: str | None
    submitted_at: datetime
    status: str


class Platform:
    def __init__(self, name: str, settings: OutboundSettings) -> None:
        self.name = name
        self.failure_rate, self.down = settings.failure_rate, settings.down
        self.no_answer_rate, self.test_reads = settings.no_answer_rate, settings.test_reads
        self.receipt_failure_rate, self.receipt_pending_rate = (settings.receipt_failure_rate,
                                                                settings.receipt_pending_rate)
        self.rng = random.Random(settings.seed)
        self.messages: OrderedDict[str, Sent] = OrderedDict()
        self.by_ref: dict[tuple[str, str], str] = {}
        self.sent = 0

    def fails(self) -> bool:
        """This message is not taken (the knobs: down, or failing a fraction)."""
        return self.down or (self.failure_rate > 0 and self.rng.random() < self.failure_rate)

    def check_up(self) -> None:
        if self.fails():
            raise unavailable(self.name)

    def check_batch_up(self) -> None:
        """A batch call while the platform is down fails whole; otherwise each message fails on its own."""
        if self.down:
            raise unavailable(self.name)

    def answered(self) -> bool:
        return not (self.no_answer_rate > 0 and self.rng.random() < self.no_answer_rate)

    def earlier(self, member: str, ref: str | None) -> Sent | None:
        return self.messages.get(self.by_ref.get((member, ref), "")) if ref else None

    def receipt(self) -> str:
        """What a taken message's receipt says (the receipt knobs)."""
        draw = self.rng.random() if self.receipt_failure_rate or self.receipt_pending_rate else 1.0
        if draw < self.receipt_failure_rate:
            return "failed"
        return "pending" if draw < self.receipt_failure_rate + self.receipt_pending_rate else "delivered"

    def add(self, m: Sent) -> None:
        if m.status == "delivered":  # SMS and push (a voice call has answered / no_answer)
            m.status = self.receipt()
        self.messages[m.id] = m
        if m.ref:
            self.by_ref[(m.member, m.ref)] = m.id
        self.sent += 1
        while len(self.messages) > KEEP:
            self.forget(self.messages.popitem(last=False)[1])

    def forget(self, old) -> None:
        """`old` left the store (the oldest beyond KEEP)."""
        if old.ref:
            self.by_ref.pop((old.member, old.ref), None)

    def own(self, member: str, message_id: str) -> Sent:
        m = self.messages.get(message_id)
        if m is None or m.member != member:
            raise Problem(404, f"{self.name}.not_found", ("没有这条记录", "Unknown message"))
        return m

    def known(self, member: str, ids: list[str]) -> list:
        """The member's own messages among `ids` (unknown or others' ones left out), in the order asked."""
        return [m for m in map(self.messages.get, ids) if m is not None and m.member == member]

    def to(self, target: str) -> list[Sent]:
        if not self.test_reads:
            raise Problem(404, "not_found", ("没有这个资源", "Not found"))
        return [m for m in self.messages.values() if m.to == target]


def unavailable(name: str) -> Problem:
    return Problem(503, f"{name}.unavailable", ("平台暂时无法发送", "The platform cannot send right now"),
                   headers={"Retry-After": "1"})


def batch_texts(own: list[str | None], shared: str | None) -> list[str]:
    """Each message's text: its own, else the batch's one text; a message with neither is a 422 naming it."""
    for i, text in enumerate(own):
        if text is None and shared is None:
            raise invalid(f"messages.{i}.text", "batch.text_missing", "每条消息须有内容：本条的 text 或整批的 text",
                          "Each message needs a text: its own or the batch's")
    return [text if text is not None else shared for text in own]


class BatchResult(BaseModel):
    index: int = Field(description="在请求 messages 中的位置")
    ref: str | None
    id: str | None = Field(description="消息编号（据此查回执）；未发出时为空")
    status: str = Field(description="已发出的：其回执（delivered / pending / failed）；未发出的：failed（id 为空，可重发）")
    error: str | None = Field(default=None, description="未发出的原因代码")


class BatchOut(BaseModel):
    accepted: int
    failed: int
    results: list[BatchResult]


def batch_out(results: list[BatchResult]) -> BatchOut:
    failed = sum(1 for r in results if r.id is None)
    return BatchOut(accepted=len(results) - failed, failed=failed, results=results)


class ReceiptsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=BATCH_MAX, description="消息编号（至多 500 个）；不认识的不答")
