"""What the clients of the outbound platforms (common/sms.py, common/voice.py, common/push.py) share: the
member's token on each call, and one exception for "the platform did not take it" (down, failing, unreachable, timed out)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx


class PlatformUnavailable(Exception):
    """The platform did not take the message; trying again later may work."""


class PlatformClient:
    def __init__(self, client: httpx.AsyncClient, token: Callable[[], Awaitable[str]]) -> None:
        self.client, self.token = client, token

    async def _call(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.token()}"}
        try:
            return await self.client.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(type(exc).__name__) from exc

    async def _send(self, path: str, body: dict, *, expect: int = 202):
        resp = await self._call("POST", path, json=body)
        if resp.status_code != expect:
            raise PlatformUnavailable(f"HTTP {resp.status_code}")
        return resp.json()

    async def _send_batch(self, base: str, messages: list[dict], **shared) -> list[dict]:
        """A batch call (`{base}/batches`, up to 500 messages; a field left out of a message takes the batch's
        one in `shared`): per message `{index, ref, id, status, error}`, `id` None where that one was not taken.
        PlatformUnavailable when none was (down, unreachable, refused)."""
        return (await self._send(f"{base}/batches", {**shared, "messages": messages}, expect=200))["results"]

    async def _receipts(self, base: str, message_ids: list[str]) -> list[dict]:
        """The receipts of up to 500 messages in one call (unknown ones left out)."""
        return await self._send(f"{base}/receipts/query", {"ids": message_ids}, expect=200)

    async def _receipt(self, path: str) -> dict | None:
        resp = await self._call("GET", path)
        return resp.json() if resp.status_code == 200 else None

    async def aclose(self) -> None:
        await self.client.aclose()
