"""A small client of the app-push provider (emulated in gateway/departments/push.py)."""
from __future__ import annotations

from common.outbound import PlatformClient, PlatformUnavailable  # noqa: F401 - raised to callers

BASE = "/departments/push/v1"
PATH = f"{BASE}/messages"


class PushClient(PlatformClient):
    async def push(self, alias: str, title: str, text: str, *, ref: str | None = None) -> dict:
        """`{id, status}`; PlatformUnavailable when the provider did not take it. The same `ref` pushes once."""
        return await self._send(PATH, {"alias": alias, "title": title, "text": text, "ref": ref})

    async def push_batch(self, messages: list[dict], *, title: str | None = None, text: str | None = None) -> list[dict]:
        """Up to 500 `{alias, ref[, title, text]}` in one call (see PlatformClient._send_batch)."""
        return await self._send_batch(BASE, messages, title=title, text=text)

    async def receipt(self, message_id: str) -> dict | None:
        return await self._receipt(f"{PATH}/{message_id}")

    async def receipts(self, message_ids: list[str]) -> list[dict]:
        return await self._receipts(BASE, message_ids)
