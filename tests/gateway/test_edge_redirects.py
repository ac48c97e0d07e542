"""The edge's own redirects never name the caller's Host (issue 23, finding 11): nginx answers `/matching` (a
`location /matching/`) with 301 and a Location it built from the Host header unless told otherwise."""
from __future__ import annotations

import pytest

from tests.gateway.test_edge import edge  # noqa: F401 - the fixture (real nginx in front of the gateway)


@pytest.mark.parametrize("path", ["/matching", "/departments"])
async def test_a_redirect_of_the_edge_is_relative(edge, path):  # noqa: F811
    r = await edge.client.get(path, headers={"Host": "evil.example"})
    location = r.headers.get("location")
    assert location is None or (location.startswith("/") and not location.startswith("//")), (r.status_code,
                                                                                               location)
    assert "evil.example" not in (location or "")
