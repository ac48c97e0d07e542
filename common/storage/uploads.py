"""Which routes take file uploads and how large their bodies may be: one place for the services (the body limit of
their middleware), the gateway (which streams these bodies instead of reading them whole) and its edge (nginx's
`client_max_body_size` for them, without request buffering).

The limit per kind is the file's; a route's body limit adds room for the multipart envelope and a few form fields.
"""
from __future__ import annotations

import re

MIB = 1024 * 1024
KIND_LIMITS = {"photo": 10 * MIB, "material": 20 * MIB}
ENVELOPE = 256 * 1024
UPLOAD_BODY_LIMIT = max(KIND_LIMITS.values()) + ENVELOPE
# POST …/requests/{id}/photos, POST …/requests/{id}/materials/{code}/upload and Open311's POST requests.{fmt}
# (a multipart one may carry GeoReport's `media` photo; its other bodies keep the default limit, checked there)
UPLOAD_PATH = re.compile(r"^(?:/services/v1/requests/[^/]+/(?:photos|materials/[^/]+/upload)"
                         r"|/open311/v2/requests\.(?:json|xml))$")
# the same routes as an nginx location regex (the edge)
NGINX_UPLOAD_LOCATION = r"^(/services/v1/requests/[^/]+/(photos|materials/[^/]+/upload)|/open311/v2/requests\.(json|xml))$"


def upload_limit(method: str, path: str) -> int | None:
    """The body limit of an upload route, or None for every other call (the default limit applies)."""
    if method == "POST" and UPLOAD_PATH.match(path):
        return UPLOAD_BODY_LIMIT
    return None
