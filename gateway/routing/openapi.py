"""One OpenAPI document for the whole platform: the gateway's own operations plus every service's.

The merged document declares the bearer (JWT) security scheme, required by every operation except the public
ones (token, JWKS, health, anonymous Open311 reads), so Swagger UI at `/docs` has an "Authorize" button: get a
token at `POST /auth/v1/token`, paste it, and try any operation. Every JSON or form request body and every JSON
success response carries an example: the one the service wrote, else one built from the schema (its fields'
`examples`, defaults, enums and formats).
"""
from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import httpx

from common.openapi import resolve_ref
from gateway.routing.forwarder import Upstream

CACHE_SECONDS = 30.0
SECURITY_SCHEME = "bearerAuth"
BEARER = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
          "description": "网关签发的访问令牌：POST /auth/v1/token 获取后填入。An access token from POST /auth/v1/token."}
# Operations anyone may call (no token): (method or "*", path prefix)
PUBLIC = (("post", "/auth/v1/token"), ("get", "/.well-known/jwks.json"), ("get", "/healthz"), ("get", "/readyz"),
          ("get", "/metrics"), ("get", "/open311/v2/"))
HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_FORMAT_EXAMPLES = {"date-time": "2026-11-20T10:00:00+08:00", "date": "2026-11-20", "email": "user@example.com",
                    "uri": "https://example.com/", "uuid": "0193a5e2-7c1e-7c3a-9f1e-2b7d4c6a8e10"}


def example_for(schema: Any, components: dict, depth: int = 0) -> Any:
    """A plausible instance of `schema`, from its own examples where it has them."""
    schema = resolve_ref(schema, components)
    if "example" in schema:
        return schema["example"]
    if schema.get("examples"):
        ex = schema["examples"]
        return ex[0] if isinstance(ex, list) else next(iter(ex.values()), None)
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if resolve_ref(o, components).get("type") != "null"]
        if options:
            return example_for(options[0], components, depth)
    if depth > 6:
        return None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = set(schema.get("required") or props)
        return {k: example_for(v, components, depth + 1) for k, v in props.items()
                if k in required or depth == 0}
    if kind == "array":
        return [example_for(schema.get("items"), components, depth + 1)]
    if kind == "string":
        return _FORMAT_EXAMPLES.get(schema.get("format"), schema.get("title") or "string")
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    return None


def add_security_and_examples(doc: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer scheme (public operations excepted) and fill in missing examples, in place."""
    components = doc.setdefault("components", {})
    schemas = components.get("schemas", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = BEARER
    doc["security"] = [{SECURITY_SCHEME: []}]
    for path, item in (doc.get("paths") or {}).items():
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            if any(method == m and (path == p or (p.endswith("/") and path.startswith(p))) for m, p in PUBLIC):
                op["security"] = []
            media_types = list((op.get("requestBody") or {}).get("content", {}).values())
            for status in ("200", "201"):
                content = (op.get("responses") or {}).get(status, {}).get("content", {})
                if "application/json" in content:
                    media_types.append(content["application/json"])
            for media in media_types:
                if "example" in media or "examples" in media or "schema" not in media:
                    continue
                example = example_for(media["schema"], schemas)
                if example is not None:
                    media["example"] = example
    return doc


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
    from common.openapi_contract import distinct_titles

    return distinct_titles(merged)


class AggregatedOpenAPI:
    def __init__(self, upstreams: dict[str, Upstream]) -> None:
        self.upstreams = upstreams
        self._cached: dict[str, Any] | None = None
        self._at = 0.0

    async def _fetch(self, name: str, upstream: Upstream) -> tuple[str, dict[str, Any] | None]:
        try:
            resp = await upstream.client.get("/openapi.json", timeout=3.0, auth=upstream.auth)
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
        merged = add_security_and_examples(merge_openapi(own, parts))
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
