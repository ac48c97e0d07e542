"""How an outbox relay delivers a batch (common/outbox.py): to svc_metrics' event ingest (`HttpEventSender`, one
POST a batch) or to a feed's subscriber (`FeedSender`, a PUT or DELETE per subject, ADR 0007). A sender that got
only part of a batch through says which part with `PartialDelivery`."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

log = logging.getLogger("onenet.outbox")

Sender = Callable[[list[dict[str, Any]]], Awaitable[None]]


class PartialDelivery(Exception):
    """Raised by a sender that delivered only some events of a batch: `delivered` holds their positions in the
    batch. The relay marks those delivered and backs off the others (one UPDATE each)."""

    def __init__(self, delivered: set[int], cause: str) -> None:
        super().__init__(cause)
        self.delivered = delivered


class HttpEventSender:
    """POSTs a batch to svc_metrics' ingest endpoint with the service's own token."""

    def __init__(self, url: str, token_provider: Callable[[], Awaitable[str]] | None, *,
                 timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None,
                 auth: httpx.Auth | None = None) -> None:
        self.url = url
        self.token_provider = token_provider
        # `auth`: the subscriber's gateway assertion on each delivery (common.assertion; ADR 0013)
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, auth=auth)

    async def __call__(self, events: list[dict[str, Any]]) -> None:
        headers = {"Content-Type": "application/json"}
        if self.token_provider is not None:
            headers["Authorization"] = f"Bearer {await self.token_provider()}"
        # orjson: httpx's own encoding (the standard library's) was a tenth of a busy relay's event loop time
        resp = await self._client.post(self.url, content=orjson.dumps({"events": events}), headers=headers)
        if resp.status_code >= 300:
            raise RuntimeError(f"ingest answered {resp.status_code}: {resp.text[:200]}")

    async def aclose(self) -> None:
        await self._client.aclose()


# answers after which trying the same request again cannot help (the subscriber refused its content): the feed
# goes on with the other subjects and keeps that one pending (retried with backoff, visible in the gauges)
_REFUSED = {400, 409, 413, 415, 422}


class FeedSender:
    """Delivers feed rows to a subscriber's replica endpoint: `<prefix>removed` → `DELETE {url}/{subject}
    ?version=`, anything else → `PUT {url}/{subject}` with the row's data as the body.

    Per subject only the newest row of a batch is sent (each row is a full snapshot with a per-subject `version`;
    the subscriber ignores versions older than what it holds), in outbox order. A connection error, timeout, 5xx,
    401/403 or 429 stops the batch (the subscriber is down or misconfigured: everything after would fail too); a
    refusal (400/409/413/422) keeps only that subject pending. Both raise `PartialDelivery` with what got through.
    """

    def __init__(self, url: str, token_provider: Callable[[], Awaitable[str]] | None, *, timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None, auth: httpx.Auth | None = None) -> None:
        self.url = url.rstrip("/")
        self.token_provider = token_provider
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport, auth=auth)

    async def _deliver(self, event: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        data = event.get("data") or {}
        target = f"{self.url}/{quote(str(event['subject']), safe='')}"
        if event["type"].endswith(".removed"):
            params = {"version": str(data["version"])} if data.get("version") is not None else None
            return await self._client.delete(target, params=params, headers=headers)
        return await self._client.put(target, json=data, headers=headers)

    async def __call__(self, events: list[dict[str, Any]]) -> None:
        newest = {e["subject"]: i for i, e in enumerate(events)}  # the last row of each subject in the batch
        delivered: set[int] = set()
        refused: list[str] = []
        headers = {}
        try:
            if self.token_provider is not None:
                headers["Authorization"] = f"Bearer {await self.token_provider()}"
            for i, event in enumerate(events):
                if newest[event["subject"]] != i:
                    continue  # superseded by a later snapshot of the same subject in this batch
                resp = await self._deliver(event, headers)
                if resp.status_code < 300 or (resp.status_code == 404 and event["type"].endswith(".removed")):
                    delivered.update(j for j, e in enumerate(events[: i + 1]) if e["subject"] == event["subject"])
                    continue
                if resp.status_code in _REFUSED:
                    refused.append(f"{event['subject']}: {resp.status_code} {resp.text[:120]}")
                    log.error("feed subscriber refused an update; kept pending",
                              extra={"url": self.url, "status": resp.status_code, "event_id": event["event_id"]})
                    continue
                raise RuntimeError(f"subscriber answered {resp.status_code}: {resp.text[:200]}")
        except Exception as exc:  # noqa: BLE001 - stop here; what got through is marked, the rest retried
            raise PartialDelivery(delivered, str(exc)) from exc
        if refused:
            raise PartialDelivery(delivered, "refused: " + "; ".join(refused))

    async def aclose(self) -> None:
        await self._client.aclose()
