"""A Host header is the caller's to choose: no answer may send a client to it (issue 23, finding 11).

Starlette's trailing-slash redirect answered `/services/v1/requests/` with 307 and an absolute Location built from
the Host header; Open311 discovery advertised the address the call arrived at, svc_services' own port behind the
gateway. Paths are exact (an unknown one is a 404: a problem, or under /open311/ GeoReport v2's error list) and
discovery advertises the gateway's public URL.
"""
from __future__ import annotations

import pytest

from tests.svc_services.conftest import OPS

EVIL = {"Host": "evil.example"}


@pytest.mark.parametrize("path", ["/services/v1/requests/", "/services/v1/catalogue/items/",
                                  "/open311/v2/discovery.json/", "/healthz/"])
async def test_a_trailing_slash_is_an_unknown_path_not_a_redirect(client, auth, path):
    r = await client.get(path, headers={**EVIL, **auth(**OPS)})
    assert r.status_code == 404, (r.status_code, r.headers.get("location"))
    assert "location" not in r.headers
    if path.startswith("/open311/"):  # GeoReport v2 answers its own errors: a list of {code, description}
        assert r.headers["content-type"].startswith("application/json")
        assert [e["code"] for e in r.json()] == [404]
    else:
        assert r.headers["content-type"].startswith("application/problem+json")
    assert "evil.example" not in r.text


async def test_discovery_advertises_the_gateways_public_url(client):
    settings = client.app.state.settings
    r = await client.get("/open311/v2/discovery.json", headers=EVIL)
    assert r.status_code == 200
    assert [e["url"] for e in r.json()["endpoints"]] == [settings.gateway_url.rstrip("/") + "/open311/v2/"]
    assert "evil.example" not in r.text and "8001" not in r.text
    settings.public_url = "https://onenet.example.gov.cn/"
    r = await client.get("/open311/v2/discovery.xml", headers=EVIL)
    assert b"<url>https://onenet.example.gov.cn/open311/v2/</url>" in r.content
