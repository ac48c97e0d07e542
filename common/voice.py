"""A small client of the automated voice-call platform (语音外呼; emulated in gateway/departments/voice.py)."""
from __future__ import annotations

from common.outbound import PlatformClient, PlatformUnavailable  # noqa: F401 - raised to callers

PATH = "/departments/voice/v1/calls"


class VoiceClient(PlatformClient):
    async def call(self, phone: str, text: str, *, ref: str | None = None) -> dict:
        """`{id, status}`: the call was placed (`answered` or `no_answer`); PlatformUnavailable otherwise. The
        same `ref` again answers the first call without placing another."""
        return await self._send(PATH, {"phone": phone, "text": text, "ref": ref})

    async def result(self, call_id: str) -> dict | None:
        return await self._receipt(f"{PATH}/{call_id}")
