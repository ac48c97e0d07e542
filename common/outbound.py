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

    async def _send(self, path: str, body: dict) -> dict:
        resp = await self._call("POST", path, json=body)
        if resp.status_code != 202:
            raise PlatformUnavailable(f"HTTP {resp.status_code}")
        return resp.json()

    async def _receipt(self, path: str) -> dict | None:
        resp = await self._call("GET", path)
        return resp.json() if resp.status_code == 200 else None

    async def aclose(self) -> None:
        await self.client.aclose()
