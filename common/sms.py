"""A small client of the SMS platform (短信平台; emulated in gateway/departments/sms.py): send a text, read its
delivery receipt. Whoever sends says how it reaches the platform: the gateway straight at the emulators'
upstream with its assertion (gateway/accounts/phone.py), a service through the gateway with its own token.
"""
from __future__ import annotations

from common.outbound import PlatformClient, PlatformUnavailable

PATH = "/departments/sms/v1/messages"

# The SMS platform fails as the other outbound platforms do; the name stays for its callers.
SmsUnavailable = PlatformUnavailable


class SmsClient(PlatformClient):
    async def send(self, phone: str, text: str) -> str:
        """The platform's message id; SmsUnavailable when it did not take the message."""
        return (await self._send(PATH, {"phone": phone, "text": text}))["id"]

    async def receipt(self, message_id: str) -> dict | None:
        return await self._receipt(f"{PATH}/{message_id}")

    async def last_message(self, phone: str) -> dict | None:
        """Tests and local runs only: the emulator answers it only with ONENET_SMS_TEST_READS on."""
        resp = await self._call("GET", "/departments/sms/v1/testing/last-message", params={"phone": phone})
        return resp.json() if resp.status_code == 200 else None
