"""OpenAPI schema walking shared by the gateway's aggregated docs and the exchange catalogue's derivation."""
from __future__ import annotations

from typing import Any


def resolve_ref(schema: Any, components: dict, *, unwrap_single: bool = False,
                seen: frozenset = frozenset()) -> dict:
    """`schema` with its `$ref`s followed into `components` (a cycle gives `{}`, as does a non-object).
    `unwrap_single`: an `allOf` / `anyOf` / `oneOf` with a single non-null option is that option (how FastAPI
    writes `X | None`)."""
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            return {}
        seen = seen | {ref}
        schema = components.get(ref.rsplit("/", 1)[-1], {})
    if not isinstance(schema, dict):
        return {}
    if unwrap_single:
        for key in ("allOf", "anyOf", "oneOf"):
            opts = [o for o in schema.get(key, []) if o.get("type") != "null"]
            if len(opts) == 1:
                return resolve_ref(opts[0], components, unwrap_single=True, seen=seen)
    return schema
