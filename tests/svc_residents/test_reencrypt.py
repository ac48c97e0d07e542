"""Key rotation: `onenet residents reencrypt` moves every encrypted field to the active key in batches, each batch
one transaction, resumable and idempotent, with the blind indexes still valid and the old key removable after."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from common.crypto import FieldProtection, generate_key
from deploy import demo
from tests.svc_residents.conftest import P


def _rotate_keyfile(path, *, drop_old: bool = False) -> FieldProtection:
    doc = json.loads(path.read_text())
    if "k2" not in doc["keys"]:
        doc["keys"]["k2"] = generate_key()
    doc["active"] = "k2"
    if drop_old:
        doc["keys"] = {"k2": doc["keys"]["k2"]}
    path.write_text(json.dumps(doc))
    return FieldProtection.from_file(path, create=False)


async def _tokens(client):
    from svc_residents.models import Person

    async with client.app.state.db.session() as s:
        return {r.id: (r.id_number_enc, r.phone_enc, r.id_number_bidx, r.phone_bidx)
                for r in (await s.execute(select(Person))).scalars()}


async def test_reencrypt_batches_resumes_and_keeps_indexes(seeded, tmp_path):
    from svc_residents.rotation import reencrypt, remaining

    keyfile = tmp_path / "keys" / "fields.json"
    before = await _tokens(seeded)
    assert all(t[0].startswith("v1.k1.") for t in before.values())
    db = seeded.app.state.db
    new = _rotate_keyfile(keyfile)
    assert await remaining(db, new) == 24  # 12 ID numbers, 12 phones

    class Stop(Exception):
        pass

    def stop_after_first(n):
        raise Stop

    with pytest.raises(Stop):  # interrupted after its first batch: that batch is kept
        await reencrypt(db, new, batch_size=5, on_batch=stop_after_first)
    assert await remaining(db, new) == 24 - 10
    r = await reencrypt(db, new, batch_size=5)  # resumes with what is left
    assert (r.reencrypted, r.scanned, r.batches, r.failures) == (14, 7, 2, [])
    assert await remaining(db, new) == 0
    again = await reencrypt(db, new, batch_size=5)  # idempotent
    assert (again.reencrypted, again.scanned) == (0, 0)

    after = await _tokens(seeded)
    assert all(t[0].startswith("v1.k2.") and t[1].startswith("v1.k2.") for t in after.values())
    assert {k: v[2:] for k, v in after.items()} == {k: v[2:] for k, v in before.items()}  # indexes unchanged
    # the old key can go: everything decrypts with k2 alone, and exact search still finds people
    only_new = _rotate_keyfile(keyfile, drop_old=True)
    seeded.app.state.protection = only_new
    from svc_residents.protection import reveal

    for key, name, id_number, phone, *_ in demo.PERSONS:
        enc = after[P(key)]
        assert reveal(only_new, P(key), "id_number", enc[0]) == id_number
        assert reveal(only_new, P(key), "phone", enc[1]) == phone


async def test_reencrypt_search_and_reveal_after_rotation(seeded, tmp_path, as_):
    from svc_residents.rotation import reencrypt

    keyfile = tmp_path / "keys" / "fields.json"
    await reencrypt(seeded.app.state.db, _rotate_keyfile(keyfile), batch_size=100)
    seeded.app.state.protection = _rotate_keyfile(keyfile, drop_old=True)
    h = as_("staff1")
    r = await seeded.post("/residents/v1/persons/search", json={"id_number": demo.PERSONS[0][2]}, headers=h)
    assert [p["id"] for p in r.json()["items"]] == [P("P1")]
    r = await seeded.get(f"/residents/v1/persons/{P('P1')}", params={"reveal": "true", "purpose": "轮换后核对"},
                         headers=h)
    assert r.json()["id_number"] == demo.PERSONS[0][2]


async def test_undecryptable_values_are_reported_and_left(seeded, tmp_path):
    from svc_residents.models import Person
    from svc_residents.rotation import reencrypt

    keyfile = tmp_path / "keys" / "fields.json"
    # a value under a key the keyring no longer has
    async with seeded.app.state.db.session() as s, s.begin():
        p = await s.get(Person, P("P5"))
        p.phone_enc = "v1.k0." + p.phone_enc.split(".", 2)[2]
    r = await reencrypt(seeded.app.state.db, _rotate_keyfile(keyfile), batch_size=4)
    assert [(pid, f) for pid, f, _ in r.failures] == [(P("P5"), "phone")]
    assert r.reencrypted == 23


def test_cli_reencrypt(tmp_path, monkeypatch, backend):
    import asyncio

    from typer.testing import CliRunner

    from common.db import Database
    from common.migrations import upgrade
    from deploy.cli import app, register_service_commands
    from svc_residents.seed import seed_demo

    if backend != "sqlite":
        pytest.skip("the command is the same on both backends; its logic is tested on both above")
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    keyfile = tmp_path / "fields.json"
    monkeypatch.setenv("ONENET_SVC_RESIDENTS_DATABASE_URL", url)
    monkeypatch.setenv("ONENET_FIELD_KEYS_FILE", str(keyfile))
    upgrade("svc_residents", url)

    async def seed():
        db = Database(url)
        try:
            await seed_demo(db, FieldProtection.from_file(keyfile))
        finally:
            await db.dispose()

    asyncio.run(seed())
    _rotate_keyfile(keyfile)
    register_service_commands()
    result = CliRunner().invoke(app, ["residents", "reencrypt", "--batch", "5"])
    assert result.exit_code == 0, result.output
    assert "已重新加密 24 个" in result.output and "剩余 0 个" in result.output
    result = CliRunner().invoke(app, ["residents", "reencrypt"])
    assert result.exit_code == 0 and "已重新加密 0 个" in result.output
