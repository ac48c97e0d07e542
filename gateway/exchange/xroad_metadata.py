"""The X-Road metadata services for REST (PR-MREST, and PR-META for listClients): what the answers hold.

- `service_description`: a catalogued service's own OpenAPI description (PR-MREST §5), cut from the platform's
  combined document: the operations under the service's path prefix (a template segment such as `{code}`
  matches the prefix's concrete segment, so the emulators' `POST /departments/{code}/v1/queries` belongs to
  `/departments/minzheng/v1/`), their paths relative to the prefix (what the client appends to the service id,
  §4.1 of PR-REST), path parameters the prefix fixes removed, only the schemas they reference, and the service's
  X-Road address as its server.
- `service_entry`: one `service` element of listMethods / allowedMethods (PR-MREST §4, Annex B): the service id,
  `service_type` (`OPENAPI` when a description is known, else `REST`) and `endpoint_list` of `{method, path}`
  with template segments written `*`, limited to the methods the catalogue forwards.
- `client_list_xml`: listClients' `clientList` (PR-META §2, Annex A), the default unless JSON is asked for.
"""
from __future__ import annotations

import copy
import json
from typing import Any
from xml.sax.saxutils import escape

from gateway.exchange.derive import prefix_matches
from gateway.exchange.policy import ResourceView

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _is_template(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def service_address(instance: str, r: ResourceView) -> str:
    return f"{instance}/{r.xroad_member_class}/{r.xroad_member_code}/{r.xroad_subsystem}/{r.xroad_service}"


def _refs(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out.add(ref.rsplit("/", 1)[1])
        for v in value.values():
            _refs(v, out)
    elif isinstance(value, list):
        for v in value:
            _refs(v, out)


def service_description(doc: dict, r: ResourceView, instance: str) -> dict:
    prefix = _segments(r.path_prefix)
    paths: dict[str, dict] = {}
    for template, item in (doc.get("paths") or {}).items():
        if not prefix_matches(r.path_prefix, template):
            continue
        have = _segments(template)
        fixed = {h[1:-1] for h, w in zip(have, prefix) if _is_template(h) and h != w}
        rel = "/" + "/".join(have[len(prefix):])
        item = copy.deepcopy(item)
        if "parameters" in item:
            item["parameters"] = [p for p in item["parameters"] if not (p.get("in") == "path" and p.get("name") in fixed)]
        kept = {}
        for method, op in item.items():
            if method not in HTTP_METHODS:
                kept[method] = op
                continue
            if r.methods and method.upper() not in r.methods:
                continue
            op["parameters"] = [p for p in op.get("parameters", [])
                                if not (p.get("in") == "path" and p.get("name") in fixed)]
            kept[method] = op
        if any(m in kept for m in HTTP_METHODS):
            paths[rel] = kept
    all_schemas = (doc.get("components") or {}).get("schemas", {})
    wanted: set[str] = set()
    _refs(paths, wanted)
    seen: set[str] = set()
    while wanted - seen:  # the closure of the references
        name = (wanted - seen).pop()
        seen.add(name)
        _refs(all_schemas.get(name), wanted)
    components: dict[str, Any] = {"schemas": {n: all_schemas[n] for n in sorted(seen) if n in all_schemas}}
    schemes = (doc.get("components") or {}).get("securitySchemes")
    if schemes:
        components["securitySchemes"] = schemes
    out = {"openapi": doc.get("openapi", "3.1.0"),
           "info": {"title": r.name, "version": "1", "description": r.description or r.code,
                    "x-onenet-resource": r.code},
           "servers": [{"url": "/r1/" + service_address(instance, r)}],
           "paths": paths, "components": components}
    if "security" in doc:
        out["security"] = doc["security"]
    return out


def endpoint_list(description: dict) -> list[dict]:
    out = []
    for path, item in description.get("paths", {}).items():
        shown = "/" + "/".join("*" if _is_template(s) else s for s in _segments(path))
        for method in HTTP_METHODS:
            if method in item:
                out.append({"method": method.upper(), "path": shown})
    return out


def service_entry(instance: str, r: ResourceView, description: dict | None) -> dict:
    endpoints = endpoint_list(description) if description and description.get("paths") else []
    return {"object_type": "SERVICE", "xroad_instance": instance, "member_class": r.xroad_member_class,
            "member_code": r.xroad_member_code, "subsystem_code": r.xroad_subsystem, "service_code": r.xroad_service,
            "service_type": "OPENAPI" if endpoints else "REST",
            "endpoint_list": endpoints or [{"method": m, "path": "/*"} for m in (r.methods or ("GET",))]}


def client_list_xml(clients: list[dict]) -> bytes:
    lines = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
             '<ns2:clientList xmlns:ns1="http://x-road.eu/xsd/identifiers" xmlns:ns2="http://x-road.eu/xsd/xroad.xsd">']
    order = (("xroad_instance", "xRoadInstance"), ("member_class", "memberClass"), ("member_code", "memberCode"),
             ("subsystem_code", "subsystemCode"))
    for c in clients:
        ident = c["id"]
        lines.append("  <ns2:member>")
        lines.append(f'    <ns2:id ns1:objectType="{escape(ident["object_type"])}">')
        for key, tag in order:
            if key in ident:
                lines.append(f"      <ns1:{tag}>{escape(ident[key])}</ns1:{tag}>")
        lines.append("    </ns2:id>")
        if c.get("name"):
            lines.append(f"    <ns2:name>{escape(c['name'])}</ns2:name>")
        if c.get("subsystem_name"):
            lines.append(f"    <ns2:subsystemName>{escape(c['subsystem_name'])}</ns2:subsystemName>")
        lines.append("  </ns2:member>")
    lines.append("</ns2:clientList>")
    return ("\n".join(lines) + "\n").encode()


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
