"""A small client of the SMS platform (短信平台; emulated in gateway/departments/sms.py): send a text, read its
delivery receipt. Whoever sends says how it reaches the platform: the gateway straight at the emulators'
upstream with its assertion (gateway/accounts/phone.py), a service through the gateway with its own token.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

PATH = "/departments/sms/v1/messages"


class SmsUnavailable(Exception):
    """The platform did not take the message (down, failing, unreachable, timed out)."""


class SmsClient:
    def __init__(self, client: httpx.AsyncClient, token: Callable[[], Awaitable[str]]) -> None:
        self.client, self.token = client, token

    async def _call(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.token()}"}
        try:
            return await self.client.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise SmsUnavailable(type(exc).__name__) from exc

    async def send(self, phone: str, text: str) -> str:
        """The platform's message id; SmsUnavailable when it did not take the message."""
        resp = await self._call("POST", PATH, json={"phone": phone, "text": text})
        if resp.status_code != 202:
            raise SmsUnavailable(f"HTTP {resp.status_code}")
        return resp.json()["id"]

    async def receipt(self, message_id: str) -> dict | None:
        resp = await self._call("GET", f"{PATH}/{message_id}")
        return resp.json() if resp.status_code == 200 else None

    async def last_message(self, phone: str) -> dict | None:
        """Tests and local runs only: the emulator answers it only with ONENET_SMS_TEST_READS on."""
        resp = await self._call("GET", "/departments/sms/v1/testing/last-message", params={"phone": phone})
        return resp.json() if resp.status_code == 200 else None

    async def aclose(self) -> None:
        await self.client.aclose()
