"""What the emulated outbound platforms (语音外呼 voice.py, app push push.py) share: fault knobs, an in-memory
store of the last 10,000 messages, idempotency by the sender's reference, and the test-only read.

Knobs (env `ONENET_<PLATFORM>_…`, or on `app.state.<platform>` from a test): `failure_rate` fails that fraction of
sends with 503, `down` fails them all; voice also has `no_answer_rate` (the call is placed but nobody answers:
its receipt says `no_answer`). A send naming a `ref` the same member sent before answers the first message again
without sending a second one, so a sender that lost the answer and retries reaches the person once.
`test_reads` (tests and `onenet up` only) adds `GET …/testing/messages?to=…`.
"""
from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field
from pydantic_settings import BaseSettings

from common.errors import Problem

KEEP = 10_000


class OutboundSettings(BaseSettings):
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    down: bool = False
    no_answer_rate: float = Field(default=0.0, ge=0.0, le=1.0)
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
        self.rng = random.Random(settings.seed)
        self.messages: OrderedDict[str, Sent] = OrderedDict()
        self.by_ref: dict[tuple[str, str], str] = {}
        self.sent = 0

    def check_up(self) -> None:
        if self.down or (self.failure_rate > 0 and self.rng.random() < self.failure_rate):
            raise Problem(503, f"{self.name}.unavailable", ("平台暂时无法发送", "The platform cannot send right now"),
                          headers={"Retry-After": "1"})

    def answered(self) -> bool:
        return not (self.no_answer_rate > 0 and self.rng.random() < self.no_answer_rate)

    def earlier(self, member: str, ref: str | None) -> Sent | None:
        return self.messages.get(self.by_ref.get((member, ref), "")) if ref else None

    def add(self, m: Sent) -> None:
        self.messages[m.id] = m
        if m.ref:
            self.by_ref[(m.member, m.ref)] = m.id
        self.sent += 1
        while len(self.messages) > KEEP:
            _, old = self.messages.popitem(last=False)
            if old.ref:
                self.by_ref.pop((old.member, old.ref), None)

    def own(self, member: str, message_id: str) -> Sent:
        m = self.messages.get(message_id)
        if m is None or m.member != member:
            raise Problem(404, f"{self.name}.not_found", ("没有这条记录", "Unknown message"))
        return m

    def to(self, target: str) -> list[Sent]:
        if not self.test_reads:
            raise Problem(404, "not_found", ("没有这个资源", "Not found"))
        return [m for m in self.messages.values() if m.to == target]
