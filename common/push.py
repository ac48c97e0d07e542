"""A small client of the app-push provider (emulated in gateway/departments/push.py)."""
from __future__ import annotations

from common.outbound import PlatformClient, PlatformUnavailable  # noqa: F401 - raised to callers

PATH = "/departments/push/v1/messages"


class PushClient(PlatformClient):
    async def push(self, alias: str, title: str, text: str, *, ref: str | None = None) -> dict:
        """`{id, status}`; PlatformUnavailable when the provider did not take it. The same `ref` pushes once."""
        return await self._send(PATH, {"alias": alias, "title": title, "text": text, "ref": ref})

    async def receipt(self, message_id: str) -> dict | None:
        return await self._receipt(f"{PATH}/{message_id}")
