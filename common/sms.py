"""A small client of the SMS platform (短信平台; emulated in gateway/departments/sms.py): send a text, read its
delivery receipt, or many of each in one call. Whoever sends says how it reaches the platform: the gateway straight at the emulators'
upstream with its assertion (gateway/accounts/phone.py), a service through the gateway with its own token.
"""
from __future__ import annotations

from common.outbound import PlatformClient, PlatformUnavailable

BASE = "/departments/sms/v1"
PATH = f"{BASE}/messages"

# The SMS platform fails as the other outbound platforms do; the name stays for its callers.
SmsUnavailable = PlatformUnavailable


class SmsClient(PlatformClient):
    async def send(self, phone: str, text: str) -> str:
        """The platform's message id; SmsUnavailable when it did not take the message."""
        return (await self._send(PATH, {"phone": phone, "text": text}))["id"]

    async def receipt(self, message_id: str) -> dict | None:
        return await self._receipt(f"{PATH}/{message_id}")

    async def send_batch(self, messages: list[dict], *, text: str | None = None) -> list[dict]:
        """Up to 500 `{phone, ref[, text]}` in one call, `text` the one for those without their own (see
        PlatformClient._send_batch)."""
        return await self._send_batch(BASE, messages, text=text)

    async def receipts(self, message_ids: list[str]) -> list[dict]:
        return await self._receipts(BASE, message_ids)

    async def last_message(self, phone: str) -> dict | None:
        """Tests and local runs only: the emulator answers it only with ONENET_SMS_TEST_READS on."""
        resp = await self._call("GET", f"{BASE}/testing/last-message", params={"phone": phone})
        return resp.json() if resp.status_code == 200 else None
