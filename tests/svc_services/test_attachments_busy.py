"""Uploads while every examiner thread is busy (issue 27): one that cannot start its examination within
`EXAMINE_WAIT_SECONDS` is answered 503 with Retry-After and nothing stored, instead of queueing past the gateway's
upstream deadline (a 504 for a photo then stored anyway); once a thread is free the same upload goes through."""
from __future__ import annotations

import asyncio
import threading

import pytest

from svc_services.attachments import service
from svc_services.attachments.content import EXAMINERS
from tests.s3server import free_port, s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import RES1
from tests.svc_services.files import files_client, jpeg_with_gps, store_settings  # noqa: F401
from tests.svc_services.test_attachments import new_request, post_photo, stored


@pytest.fixture
def c(files_client):  # noqa: F811 - the fixture, imported above
    return files_client


async def test_an_upload_that_cannot_be_examined_in_time_is_503_with_nothing_stored(c, auth, monkeypatch):
    rid = await new_request(c, auth)
    monkeypatch.setattr(service, "EXAMINE_WAIT_SECONDS", 0.3)
    release = threading.Event()
    holders = [EXAMINERS.submit(release.wait, 30) for _ in range(EXAMINERS._max_workers)]  # noqa: SLF001
    try:
        r = await post_photo(c, auth, rid, jpeg_with_gps())
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "attachment.busy" and r.headers["retry-after"] == "2"
        assert await stored(c) == (0, 0)
    finally:
        release.set()
        await asyncio.gather(*(asyncio.wrap_future(h) for h in holders))
    r = await post_photo(c, auth, rid, jpeg_with_gps(), who=RES1)
    assert r.status_code == 201, r.text
    assert await stored(c) == (1, 2)
