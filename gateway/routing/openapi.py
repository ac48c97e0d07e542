"""One OpenAPI document for the whole platform: the gateway's own operations plus every service's."""
from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import httpx

from gateway.routing.forwarder import Upstream

CACHE_SECONDS = 30.0


def merge_openapi(own: dict[str, Any], parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Union of paths; schema names that clash with different content get the service name as a prefix."""
    merged = copy.deepcopy(own)
    merged.setdefault("paths", {})
    schemas = merged.setdefault("components", {}).setdefault("schemas", {})
    tags = {t["name"]: t for t in merged.get("tags", [])}
    for service, doc in parts.items():
        doc_schemas = doc.get("components", {}).get("schemas", {})
        renames = {}
        for name, schema in doc_schemas.items():
            if name in schemas and schemas[name] != schema:
                renames[name] = f"{service}__{name}"
        raw = json.dumps({"paths": doc.get("paths", {}), "schemas": doc_schemas}, ensure_ascii=False)
        for old, new in renames.items():
            raw = raw.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
        rewritten = json.loads(raw)
        for name, schema in rewritten["schemas"].items():
            schemas[renames.get(name, name)] = schema
        for path, item in rewritten["paths"].items():
            if path in ("/healthz", "/readyz", "/metrics"):
                continue  # each process has its own; the gateway documents its own
            merged["paths"][path] = item
        for t in doc.get("tags", []):
            tags.setdefault(t["name"], t)
    if tags:
        merged["tags"] = list(tags.values())
    return merged


class AggregatedOpenAPI:
    def __init__(self, upstreams: dict[str, Upstream]) -> None:
        self.upstreams = upstreams
        self._cached: dict[str, Any] | None = None
        self._at = 0.0

    async def _fetch(self, name: str, upstream: Upstream) -> tuple[str, dict[str, Any] | None]:
        try:
            resp = await upstream.client.get("/openapi.json", timeout=3.0)
            if resp.status_code == 200:
                return name, resp.json()
        except (httpx.HTTPError, ValueError):
            pass
        return name, None

    async def fetch_all(self) -> dict[str, dict[str, Any] | None]:
        """Every upstream's own OpenAPI document (None for one that did not answer)."""
        return dict(await asyncio.gather(*(self._fetch(n, u) for n, u in self.upstreams.items())))

    async def document(self, own: dict[str, Any]) -> dict[str, Any]:
        if self._cached is not None and time.monotonic() - self._at < CACHE_SECONDS:
            return self._cached
        results = await asyncio.gather(*(self._fetch(n, u) for n, u in self.upstreams.items()))
        parts = {n: d for n, d in results if d is not None}
        merged = merge_openapi(own, parts)
        merged["info"]["title"] = "OneNet 社区一网通办平台 API"
        merged["info"]["description"] = (
            "所有服务的接口经网关统一对外。All services' operations through the gateway. "
            "Obtain a token at POST /auth/v1/token, then send Authorization: Bearer <token>.")
        missing = sorted(set(self.upstreams) - set(parts))
        if missing:
            merged["info"]["x-onenet-unavailable"] = missing
        else:
            self._cached, self._at = merged, time.monotonic()
        return merged
