"""Material files stay readable across a field-key rotation: `rewrap_keys` re-wraps each file's data key under the
active field key (the stored object is not re-written), a second run changes nothing, and after it the old key can
leave the keyring; a key that does not unwrap is reported and left alone. Both databases, both stores."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from common.crypto import BlindIndex, FieldCipher, FieldProtection, _decode_key, generate_key
from common.storage import read_all
from svc_services.attachments.models import Attachment
from svc_services.attachments.rotation import remaining, rewrap_keys
from tests.s3server import s3_bucket, s3_endpoint  # noqa: F401
from tests.svc_services.conftest import STAFF
from tests.svc_services.files import files_client, jpeg_with_gps, pdf, store_settings  # noqa: F401
from tests.svc_services.test_attachments import new_request, post_photo
from tests.svc_services.test_attachments_materials import accepted_meal, put_material


@pytest.fixture
def c(files_client):  # noqa: F811 - the fixture, imported above
    return files_client


def rotated(c) -> tuple[FieldProtection, FieldProtection]:
    """(the old keys + k2, k2 active; k2 alone): svc_services' keyring during and after a rotation."""
    doc = json.loads(Path(c.app.state.settings.field_keys_file).read_text())
    blind = BlindIndex(_decode_key(doc["blind_index_key"]))
    k2 = _decode_key(generate_key())
    during = FieldCipher({**{kid: _decode_key(k) for kid, k in doc["keys"].items()}, "k2": k2}, "k2")
    return FieldProtection(during, blind), FieldProtection(FieldCipher({"k2": k2}, "k2"), blind)


async def wrapped(c, aid: str) -> str:
    async with c.app.state.db.session() as s:
        return (await s.execute(select(Attachment.wrapped_key).where(Attachment.id == aid))).scalar_one()


async def test_material_keys_rewrap_and_the_old_key_can_go(c, auth, upstreams):
    rid, _ = await accepted_meal(c, auth, upstreams)
    doc = pdf()
    aid = (await put_material(c, auth, rid, doc)).json()["attachment_id"]
    photo = (await post_photo(c, auth, await new_request(c, auth), jpeg_with_gps())).json()["id"]
    before = await wrapped(c, aid)
    stored = await read_all(c.app.state.store.get(aid))
    during, after = rotated(c)
    db = c.app.state.db
    assert await remaining(db, during) == 1                    # the photo is not encrypted: nothing to re-wrap
    r = await rewrap_keys(db, during, batch_size=1)
    assert (r.active_key_id, r.rewrapped, r.failures) == ("k2", 1, [])
    now = await wrapped(c, aid)
    assert now != before and now.startswith("v1.k2.") and await remaining(db, during) == 0
    assert (await rewrap_keys(db, during)).rewrapped == 0       # a second run changes nothing
    assert await read_all(c.app.state.store.get(aid)) == stored  # the object itself was not re-written
    c.app.state.protection = after                               # the old key removed from the keyring
    got = await c.get(f"/services/v1/attachments/{aid}/content", headers=auth(**STAFF))
    assert got.status_code == 200 and got.content == doc
    assert (await c.get(f"/services/v1/attachments/{photo}/content", headers=auth(**STAFF))).status_code == 200
    # a wrapped key that does not unwrap (tampered) is reported by id and left as it is
    async with db.session() as s, s.begin():
        await s.execute(update(Attachment).where(Attachment.id == aid).values(
            wrapped_key="v1.k9." + base64.urlsafe_b64encode(bytes(60)).decode()))
    r = await rewrap_keys(db, after)
    assert r.rewrapped == 0 and [a for a, _ in r.failures] == [aid]
