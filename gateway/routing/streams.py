"""Answers passed on as they arrive: an upstream's `text/event-stream` (the notification stream, ADR 0017).

Every other answer is read whole (it may be masked, and is hashed for the message log before it is sent). An event
stream is held open by the upstream for as long as it lasts: the gateway passes each chunk on as it comes, hashes
it on the way, records the call when the stream ends, and ends it itself at the token's expiry or as soon as the
caller's member or session is revoked, so a connection outlives no authorisation. The revocation is checked before
each chunk and every RECHECK_SECONDS while the upstream is quiet (a heartbeat comes only every 15 s), against the
gateway's live sets: a revocation on this replica ends the stream within RECHECK_SECONDS, one on another replica
within that plus the sets' reload (REVOCATION_REFRESH_SECONDS). The edge hands these routes to the gateway for
that reason (ADR 0012): an nginx that passes an answer on has no turn of its own while the upstream is quiet.
"""
from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
from starlette.responses import StreamingResponse

from common.auth import Principal
from common.clock import Clock
from common.errors import Problem

# Routes answered as event streams: each read of theirs may wait GatewaySettings.stream_read_timeout_seconds (here
# and at the edge, whose nginx passes them unbuffered), not the upstream timeout meant for whole answers.
EVENT_STREAM_PATHS = ("/residents/v1/notifications/stream",)
_EVENT_STREAM = b"text/event-stream"
RECHECK_SECONDS = 1.0  # a held stream's caller is checked again at least this often, chunk or not


def is_event_stream(status: int, raw: list[tuple[bytes, bytes]]) -> bool:
    """A 200 answer of `text/event-stream`, by its raw headers."""
    content_type = next((v for k, v in raw if k.lower() == b"content-type"), None)
    return status == 200 and content_type is not None and content_type.split(b";")[0].strip().lower() == _EVENT_STREAM


class UpstreamStream:
    """An upstream answer's body still arriving: its chunks, and how to let go of its connection."""

    def __init__(self, chunks: AsyncIterator[bytes], close: Callable[[], Awaitable[None]]) -> None:
        self.chunks = chunks
        self.close = close

    @classmethod
    def of_aiohttp(cls, resp: aiohttp.ClientResponse) -> UpstreamStream:
        async def close() -> None:
            resp.close()  # not back to the pool: the upstream may still be sending

        return cls(resp.content.iter_any(), close)


class PassedStream(StreamingResponse):
    """The upstream's stream to the caller: passed until `until` (a monotonic time; the forwarder sets the token's
    expiry) while `holds()` (the caller is not revoked); `done` is handed the body's SHA-256 at the end (the gate's
    message-log record)."""

    def __init__(self, source: UpstreamStream, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(self._chunks(), status_code=status)
        self.raw_headers = raw_headers
        self._source = source
        self.until: float | None = None
        self.holds: Callable[[], bool] = lambda: True
        self.done: Callable[[str], None] | None = None

    async def _chunks(self) -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        loop = asyncio.get_running_loop()
        chunks = self._source.chunks.__aiter__()

        async def next_chunk() -> bytes | None:
            try:
                return await anext(chunks)
            except StopAsyncIteration:
                return None  # the upstream ended

        reading: asyncio.Task | None = None  # the read in progress, kept across re-checks (never cut mid-read)
        try:
            while self.holds():
                wait = RECHECK_SECONDS if self.until is None else min(RECHECK_SECONDS, self.until - loop.time())
                if wait <= 0:
                    break  # the token expired
                reading = reading or asyncio.create_task(next_chunk())
                done, _ = await asyncio.wait((reading,), timeout=wait)
                if not done:
                    continue  # quiet: check the caller again
                chunk, reading = reading.result(), None
                if chunk is None or not self.holds():
                    break
                digest.update(chunk)
                yield chunk
        except (TimeoutError, aiohttp.ClientError, httpx.HTTPError, OSError):
            pass  # the upstream ended, went silent past the read timeout, or dropped: the stream ends here too
        finally:
            # the upstream let go first: this does not wait, so it holds when the caller's scope is cancelled (a
            # client gone), where any wait here would be cancelled again
            await self._source.close()
            if reading is not None:
                reading.cancel()  # not awaited, for the same reason; its end is read so that nothing is left unread
                reading.add_done_callback(lambda task: task.cancelled() or task.exception())
            if self.done is not None:
                self.done(digest.hexdigest())


async def pass_on(source: UpstreamStream, status: int, headers: list[tuple[bytes, bytes]], *, actions: tuple,
                  principal: Principal, token_clock: Clock, holds: Callable[[Principal], bool]) -> PassedStream:
    """The stream for the caller, ending at the token's expiry (token time is real time: the verifier's clock) or
    once `holds(principal)` fails (a revoked member or session)."""
    if actions:  # masking reads a whole body: a stream cannot be masked to the grant, so it is not passed
        await source.close()
        raise Problem(403, "exchange.stream_masked", ("该授权要求脱敏，实时推送无法按授权脱敏",
                                                      "This grant masks answers, which a live stream cannot be"))
    resp = PassedStream(source, status, headers)
    exp = principal.claims.get("exp")
    if isinstance(exp, (int, float)):
        resp.until = asyncio.get_running_loop().time() + exp - token_clock.timestamp()
    resp.holds = lambda: holds(principal)
    return resp
