"""How an emulated delivery platform (短信 sms.py, 语音外呼 voice.py, app push push.py) takes messages: one send,
a batch, and who may call it. Each platform keeps its own protocol (paths, bodies, answers); the store, the knobs
and the batch's shapes are outbound.py's.

- One send: a `ref` the member sent before answers that message again; otherwise the platform must be up (the
  knobs: a 503) and the new message is stored.
- A batch: down fails the whole call (503); otherwise each message is the earlier one under its `ref`, or failed
  on its own (`failure_rate`: `<platform>.unavailable`, no id, to be sent again), or new and stored.

A message is made only once it will be stored (`make`), so the knobs draw their chances in the same order for a
send as for a batch (a voice call's answered / no_answer is drawn after the platform took it).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends

from common.auth import Principal, require_roles
from gateway.departments.outbound import BatchOut, BatchResult, Platform, batch_out

# the member systems that send through a platform, and read its receipts
Sender = Annotated[Principal, Depends(require_roles("system", "ops"))]


def send_one(platform: Platform, member: str, ref: str | None, make: Callable[[], Any]) -> Any:
    if (m := platform.earlier(member, ref)) is not None:
        return m
    platform.check_up()
    m = make()
    platform.add(m)
    return m


def send_batch(platform: Platform, member: str, items: Sequence[tuple[str | None, Callable[[], Any]]]) -> BatchOut:
    """`items`: each message's `ref` and how to make it (called only for a message that is sent)."""
    platform.check_batch_up()
    results = []
    for i, (ref, make) in enumerate(items):
        m = platform.earlier(member, ref)
        if m is None and platform.fails():
            results.append(BatchResult(index=i, ref=ref, id=None, status="failed",
                                       error=f"{platform.name}.unavailable"))
            continue
        if m is None:
            m = make()
            platform.add(m)
        results.append(BatchResult(index=i, ref=ref, id=m.id, status=m.status))
    return batch_out(results)
