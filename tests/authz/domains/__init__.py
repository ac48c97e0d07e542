"""The authorisation matrix's cells by domain, one module each, beside the ones in test_matrix.py.

A module here is read by test_matrix.py (`load()`) and may define:
- `RULES: dict[str, policy.Rule]`: the domain's rules, each with its reason, written from the policy (DESIGN.md,
  DOMAIN.md, the domain's ADR), never from what the code answers; merged into `policy.RULES`.
- `CELLS: dict[str, list[Cell]]`: "METHOD /path" (as the OpenAPI document names it) → its cells.
- `FILL: dict[str, str]`: values for the domain's own path parameters ("{booking_id}" → an unknown id).
- `setup(w: World) -> None`: objects the cells aim at, made through the APIs and kept in `w.ids`, run once by
  the matrix's `world` fixture after its own.
Cell makers (`Cell`, `get`, `fresh`, `ids`, ...) come from `tests.authz.test_matrix`: a module here is imported
at the end of that module, when they are defined.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def load() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{m.name}") for m in sorted(pkgutil.iter_modules(__path__),
                                                                        key=lambda m: m.name)]
