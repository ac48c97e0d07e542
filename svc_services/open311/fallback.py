"""Open311's answer where no route answers: a path under `/open311/` that names no operation (an unknown document,
an empty format, an id holding a slash) or a method its path does not take.

GeoReport v2 has one error format, `[{"code", "description"}]` as JSON or `<errors>` as XML, and the operations
under `/open311/` declare only that (common.openapi_contract), so these routing refusals use it too, in the
format the path's extension names (JSON unless it ends in `.xml`), with the platform handler's status, detail
(in the caller's language) and headers (405's `Allow`). The rule is common.openapi_contract's
`install_open311_routing_errors`, which the gateway applies as well (to the paths its forward route cannot take).
"""
from __future__ import annotations

from fastapi import FastAPI

from common.openapi_contract import install_open311_routing_errors


def install_routing_errors(app: FastAPI) -> None:
    """Wraps the app's handler of routing errors (common.errors) for paths under `/open311/`."""
    install_open311_routing_errors(app)
