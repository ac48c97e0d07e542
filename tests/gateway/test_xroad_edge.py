"""X-Road calls through the gateway's edge (real nginx in front of the real gateway): the edge hands every
`/r1/` call to the gateway unchanged (`location /`, the raw request line), so the protocol's rules hold the same
there (nordic-institute/X-Road doc/Protocols/pr-rest_x-road_message_protocol_for_rest.md, quoted per test)."""
from __future__ import annotations

import json

from tests.gateway.test_edge import ID, _grant, edge  # noqa: F401  (the fixture)
from tests.gateway.test_xroad import _expected_hash

SVC = "/r1/CN-ONENET/GOV/dept-renshe/insurance/insurance-status"
CLIENT = "CN-ONENET/GOV/community-xf"


async def test_xroad_rules_hold_through_the_edge(edge):  # noqa: F811
    """§4.3 "the Security Server SHOULD use the last defined header as the initiator"; the request hash
    "SHA512(SHA512(headers)+SHA512(body))" over what the client sent (the headers nginx adds are not part of
    it); §4.2 an encoded "/" in the service id refused; §4.6 a request not complying answered 400 with
    X-Road-Error."""
    x = edge
    await _grant(x)
    body = json.dumps({"id_number": ID}).encode()
    token = x.h("community-xf")["Authorization"]
    headers = [("Authorization", token), ("Content-Type", "application/json"),
               ("X-Road-Client", "CN-ONENET/GOV/community-ak"), ("X-Road-Client", CLIENT)]
    request = x.client.build_request("POST", f"{SVC}/queries", content=body, headers=headers)
    r = await x.client.send(request)
    assert r.status_code == 200, r.text
    assert r.json()["data"] and r.headers["x-road-client"] == CLIENT
    sent = [(k.decode().lower(), v.decode("latin-1")) for k, v in request.headers.raw]
    assert r.headers["x-road-request-hash"] == _expected_hash("POST", f"{SVC}/queries", sent, body)
    for path in ("/r1/CN-ONENET/GOV/dept-renshe/insurance%2Finsurance-status/queries", "/r1/CN-ONENET/GOV"):
        r = await x.client.post(path, content=body, headers=headers)
        assert (r.status_code, r.headers.get("x-road-error")) == (400, "Client.BadRequest"), (path, r.text)
        assert r.headers["content-type"] == "application/json; charset=utf-8"
