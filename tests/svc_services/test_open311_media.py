"""Open311 `media_url` (issue 27): a real URL that serves the request's photo, signed and expiring, minted by
svc_services (the service that owns the photo), on both object stores. The public sees a photo only where it sees
the matter (a public item, nobody's own request, text published by staff); a resident's own request never shows
one; a forged, altered, expired or withdrawn URL serves nothing."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from svc_services.attachments.signed import MEDIA_URL_TTL_SECONDS
from tests.s3server import free_port, s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import OPS, RES1, STAFF, submit
from tests.svc_services.files import files_client, jpeg_with_gps, store_settings  # noqa: F401
from tests.svc_services.test_open311 import STREETLIGHT

BASE = "/open311/v2"


@pytest.fixture
async def c(files_client, auth):  # noqa: F811 - the fixture, imported above
    r = await files_client.post("/services/v1/catalogue/items", json=STREETLIGHT, headers=auth(**OPS))
    assert r.status_code == 201, r.text
    return files_client


async def photo(c, auth, rid, who):
    r = await c.post(f"/services/v1/requests/{rid}/photos", files={"file": ("lamp.jpg", jpeg_with_gps(), "image/jpeg")},
                     headers=auth(**who))
    assert r.status_code == 201, r.text
    return r.json()


async def media_url(c, rid, fmt="json"):
    r = await c.get(f"{BASE}/requests/{rid}.{fmt}")
    assert r.status_code == 200, r.text
    if fmt == "xml":
        import xml.etree.ElementTree as ET
        return ET.fromstring(r.content).find("request/media_url").text or None
    return r.json()[0]["media_url"]


def local(url: str) -> str:
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "onenet.example.gov.cn"  # the platform's public address
    return f"{parts.path}?{parts.query}"


async def test_media_url_serves_the_photo_once_the_matter_is_public(c, auth, clock):
    rid = (await submit(c, auth, who=STAFF, item_code="WG-SJ-001", description="路灯不亮")).json()["id"]
    att = await photo(c, auth, rid, STAFF)
    await photo(c, auth, rid, STAFF)                       # a second photo: media_url names the first
    assert await media_url(c, rid) is None                 # nothing public before staff published the matter
    r = await c.put(f"/services/v1/requests/{rid}/publication", json={"description": "路灯不亮"}, headers=auth(**STAFF))
    assert r.status_code == 200, r.text

    url = await media_url(c, rid)
    assert url and urlsplit(url).path == f"{BASE}/media/{att['id']}.jpg"
    assert await media_url(c, rid, "xml") == url
    listed = (await c.get(f"{BASE}/requests.json?service_request_id={rid}")).json()[0]["media_url"]
    assert listed == url
    r = await c.get(local(url))                            # no token: a public read
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.headers["x-content-type-options"] == "nosniff"
    own = await c.get(f"/services/v1/attachments/{att['id']}/content", headers=auth(**STAFF))
    assert r.content == own.content and b"PhoneMaker" not in r.content  # the re-encoded photo, no EXIF / GPS

    # forged or altered URLs serve nothing
    q = parse_qs(urlsplit(url).query)
    exp, sig = q["expires"][0], q["signature"][0]
    other = await photo(c, auth, rid, STAFF)
    for bad in (f"{BASE}/media/{att['id']}.jpg?expires={exp}&signature={'0' * 64}",
                f"{BASE}/media/{att['id']}.jpg?expires={int(exp) + 3600}&signature={sig}",
                f"{BASE}/media/{other['id']}.jpg?expires={exp}&signature={sig}"):
        r = await c.get(bad)
        assert r.status_code == 403, (bad, r.text)
        assert r.json()[0]["code"] == 403 and "signature" in r.json()[0]["description"]
    for bad, field in ((f"{BASE}/media/{att['id']}.jpg?signature={sig}", "expires"),
                       (f"{BASE}/media/{att['id']}.jpg?expires=soon&signature={sig}", "expires"),
                       (f"{BASE}/media/{att['id']}.jpg?expires={exp}&signature=abc", "signature"),
                       (f"{BASE}/media/{att['id']}.jpg?expires={exp}", "signature")):
        r = await c.get(bad)
        assert r.status_code == 400 and r.json()[0]["description"].startswith(field), (bad, r.text)

    # expiring: good until its expiry by the service's clock, then refused; a fresh read mints a fresh URL
    clock.advance(seconds=MEDIA_URL_TTL_SECONDS + MEDIA_URL_TTL_SECONDS // 3)
    assert (await c.get(local(url))).status_code == 403
    fresh = await media_url(c, rid)
    assert fresh != url and (await c.get(local(fresh))).status_code == 200

    # a withdrawn publication stops every URL already handed out
    r = await c.put(f"/services/v1/requests/{rid}/publication", json={"description": None}, headers=auth(**STAFF))
    assert r.status_code == 200
    assert await media_url(c, rid) is None
    assert (await c.get(local(fresh))).status_code == 404


async def test_a_residents_own_request_never_publishes_its_photo(c, auth):
    rid = (await submit(c, auth, who=RES1, item_code="WG-SJ-001", description="楼道灯坏了")).json()["id"]
    att = await photo(c, auth, rid, RES1)
    await c.put(f"/services/v1/requests/{rid}/publication", json={"description": "楼道灯坏了"}, headers=auth(**STAFF))
    assert await media_url(c, rid) is None
    # even a URL signed with the right key is refused for it: the rule is checked when serving
    from svc_services.attachments.signed import signed_url
    url = signed_url("https://onenet.example.gov.cn", c.app.state.protection, att["id"], c.app.state.clock.now())
    assert (await c.get(local(url))).status_code == 404
