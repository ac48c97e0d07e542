"""The gateway's own calls to what stands behind it (the SMS platform's emulator, svc_residents): straight at the
upstream with the gateway's assertion (ADR 0013), under a machine token of the gateway's own (member `gateway`,
role system), which the callee checks like any other."""
from __future__ import annotations

import httpx


def own_client(upstream, timeout: float = 10.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=upstream.base_url, transport=upstream.transport, auth=upstream.auth,
                             timeout=httpx.Timeout(timeout, connect=2.0))


def own_token(issuer):
    async def token() -> str:
        return issuer.issue(subject="gateway", member="gateway", role="system", scopes=[])["access_token"]

    return token
