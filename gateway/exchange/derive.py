"""The catalogue derived from the services' OpenAPI documents plus annotations (ADR 0005).

Annotations say what OpenAPI cannot: owner, sharing class, X-Road address and each field's grade. They come from
an operation's `x-onenet-resource` extension when a service sets one (`openapi_extra`), else from
`catalogue_data.BUILTIN_RESOURCES`, matched to operations by path prefix (a template segment such as `{code}`
matches any concrete segment, so `/departments/renshe/v1/` claims `POST /departments/{code}/v1/queries`).
OpenAPI contributes the rest: the methods actually offered under the prefix, the description when the
annotation has none, and the response fields (a page's `items[]` and top-level arrays are looked into); annotated
fields keep their grade. A field found there but not annotated is graded on the strict side until someone
reviews it (`UNREVIEWED`): personal information, grade important, masked outside a grant's field scope. Nobody
has looked at what it holds, so it is treated like a name or an address, not like a department code: a new
`birth_date` or `diagnosis` column a service adds is never handed out in clear because its annotation lagged. An annotation whose service did not answer stays
as annotated; one whose service answered but offers no matching operation is reported as `unmatched`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from common.openapi import resolve_ref

EXTENSION = "x-onenet-resource"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
MAX_DEPTH = 3
# The grade of a response field no annotation covers (see the module docstring): what a cautious data-protection
# officer assumes of an unknown column. `reviewed: False` shows it in the catalogue as awaiting a real grade.
UNREVIEWED = {"grade": "important", "personal": True, "sensitive": False, "mask": "generic", "reviewed": False}


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def prefix_matches(prefix: str, template: str) -> bool:
    want, have = _segments(prefix), _segments(template)
    if len(have) < len(want):
        return False
    return all(h == w or (h.startswith("{") and h.endswith("}")) for w, h in zip(want, have))


def _resolve(schema: dict | None, components: dict) -> dict:
    return resolve_ref(schema, components, unwrap_single=True)


def response_fields(operation: dict, components: dict) -> list[tuple[str, str]]:
    """Dotted paths (and titles) of the success response's fields; list responses are looked into."""
    schema = None
    for status in ("200", "201"):
        content = operation.get("responses", {}).get(status, {}).get("content", {})
        if "application/json" in content:
            schema = content["application/json"].get("schema")
            break
    schema = _resolve(schema, components)
    if schema.get("type") == "array":
        schema = _resolve(schema.get("items"), components)
    props = schema.get("properties", {})
    if "items" in props and _resolve(props["items"], components).get("type") == "array":
        schema = _resolve(_resolve(props["items"], components).get("items"), components)
    out: list[tuple[str, str]] = []

    def walk(s: dict, prefix: str, depth: int) -> None:
        for name, sub in (s.get("properties") or {}).items():
            sub = _resolve(sub, components)
            path = f"{prefix}{name}"
            if sub.get("properties") and depth < MAX_DEPTH:
                walk(sub, path + ".", depth + 1)
            else:
                out.append((path, sub.get("title") or name))

    walk(schema, "", 1)
    return out


@dataclass
class Derivation:
    resources: list[dict]
    answered: list[str] = field(default_factory=list)   # services whose OpenAPI was read
    missing: list[str] = field(default_factory=list)    # services that did not answer (annotations kept as is)
    unmatched: list[str] = field(default_factory=list)  # annotated resources with no operation in their OpenAPI
    from_extension: list[str] = field(default_factory=list)


def _operations(doc: dict):
    for path, item in (doc.get("paths") or {}).items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method.upper(), item[method]


def derive_catalogue(annotations: list[dict], docs: dict[str, dict | None]) -> Derivation:
    """`docs`: service → its OpenAPI document, or None when it could not be read."""
    by_code = {a["code"]: copy.deepcopy(a) for a in annotations}
    result = Derivation(resources=[])
    result.answered = sorted(s for s, d in docs.items() if d is not None)
    result.missing = sorted(s for s, d in docs.items() if d is None)
    # operations that annotate themselves add to (or override) the annotation data
    for service, doc in docs.items():
        for path, _method, op in _operations(doc or {}):
            ext = op.get(EXTENSION)
            if isinstance(ext, dict) and ext.get("code"):
                base = by_code.get(ext["code"], {"service": service, "path_prefix": path, "fields": [],
                                                 "description": "", "methods": [], "xroad_subsystem": service,
                                                 "xroad_service": ext["code"].split(".")[-1]})
                base.update({k: v for k, v in ext.items() if k != "fields"})
                if "fields" in ext:
                    base["fields"] = ext["fields"]
                by_code[ext["code"]] = base
                result.from_extension.append(ext["code"])
    for code, res in sorted(by_code.items()):
        doc = docs.get(res["service"])
        if doc is None:
            result.resources.append(res)
            continue
        components = (doc.get("components") or {}).get("schemas", {})
        ops = [(p, m, op) for p, m, op in _operations(doc) if prefix_matches(res["path_prefix"], p)]
        if not ops:
            result.unmatched.append(code)
            result.resources.append(res)
            continue
        res["methods"] = sorted({m for _, m, _ in ops})
        if not res.get("description"):
            first = ops[0][2]
            res["description"] = (first.get("description") or first.get("summary") or "")[:1000]
        declared = {f["path"] for f in res.get("fields") or ()}
        found: list[dict] = []
        for _, _, op in ops:
            for path, label in response_fields(op, components):
                if path not in declared:
                    declared.add(path)
                    found.append({"path": path, "label": str(label)[:100], **UNREVIEWED})
        res["fields"] = list(res.get("fields") or ()) + found
        result.resources.append(res)
    return result
