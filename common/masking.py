"""Masking by grant: the one rule for what a field outside a grant's scope becomes.

A catalogued resource declares its fields (`common.exchange_fields`, dicts with `path`, `grade`, `personal`,
`sensitive`, `mask`). Outside the granted scope: a sensitive personal field (敏感个人信息) is removed, a personal
field (个人信息) is masked (`110105********0112`, `138****0001`, `张*`; non-strings become null), another core or
important field is removed, and a general non-personal field passes. The gateway applies it to every response a
member system receives (`gateway.exchange.policy`); a service applies it itself where the gateway does not
(`grant_view`: a department clerk signed in through an app).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.crypto import mask_generic, mask_id_number, mask_name, mask_phone

REMOVE, MASK = "remove", "mask"


def mask_value(value: Any, kind: str | None) -> Any:
    """A personal value masked by its kind (`id_number`, `phone`, `name`, anything else generic); each element of
    a list; a non-string becomes None."""
    if isinstance(value, list):
        return [mask_value(v, kind) for v in value]
    if not isinstance(value, str):
        return None
    if kind == "id_number":
        return mask_id_number(value)
    if kind == "phone":
        return mask_phone(value)
    if kind == "name":
        return mask_name(value)
    return mask_generic(value, 1, 1) if len(value) > 4 else "*" * len(value)


def field_actions(fields: Iterable[dict], granted: frozenset[str] | None) -> tuple:
    """(path parts, REMOVE or MASK, mask kind) for each declared field outside `granted` (None: every field)."""
    out = []
    for fd in fields:
        if granted is None or fd["path"] in granted:
            continue
        parts = tuple(fd["path"].split("."))
        if fd.get("sensitive"):
            out.append((parts, REMOVE, None))
        elif fd.get("personal"):
            out.append((parts, MASK, fd.get("mask") or "generic"))
        elif fd.get("grade") in ("core", "important"):
            out.append((parts, REMOVE, None))
    return tuple(out)


def _apply(node: Any, parts: tuple[str, ...], action: str, kind: str | None) -> None:
    if isinstance(node, list):
        for item in node:
            _apply(item, parts, action, kind)
        return
    if not isinstance(node, dict) or parts[0] not in node:
        return
    if len(parts) > 1:
        _apply(node[parts[0]], parts[1:], action, kind)
    elif action == REMOVE:
        del node[parts[0]]
    else:
        node[parts[0]] = mask_value(node[parts[0]], kind)


def apply_actions(doc: Any, actions: tuple) -> Any:
    """Mask / remove in place; a `{items: [...]}` page or a top-level array applies to each element."""
    targets = doc["items"] if isinstance(doc, dict) and isinstance(doc.get("items"), list) else doc
    for parts, action, kind in actions:
        _apply(targets, parts, action, kind)
    return doc


def grant_view(full: dict, fields: Iterable[dict], granted: frozenset[str] | None) -> dict:
    """What a grant reader is given of one object: only the declared top-level fields, masked by the rule. A field
    the catalogue does not declare is not given at all."""
    fields = list(fields)
    out = {fd["path"]: full[fd["path"]] for fd in fields if fd["path"] in full}
    return apply_actions(out, field_actions(fields, granted))
