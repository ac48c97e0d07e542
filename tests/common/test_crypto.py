from __future__ import annotations

import base64
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.crypto import (
    BlindIndex, DecryptionError, FieldCipher, FieldProtection, generate_key, load_keyring, mask_generic,
    mask_id_number, mask_name, mask_phone,
)


@pytest.fixture
def ring():
    return {"k1": os.urandom(32), "k2": os.urandom(32)}


def test_round_trip_and_random_nonce(ring):
    c = FieldCipher(ring, "k1")
    a, b = c.encrypt("110105198003120112", aad="person.id_number"), c.encrypt("110105198003120112",
                                                                              aad="person.id_number")
    assert a != b and a.startswith("v1.k1.")
    assert c.decrypt(a, aad="person.id_number") == "110105198003120112"


def test_tamper_wrong_aad_unknown_key_malformed(ring):
    c = FieldCipher(ring, "k1")
    tok = c.encrypt("secret", aad="a")
    body = bytearray(tok.split(".", 2)[2].encode())
    body[-3] = ord("A") if body[-3] != ord("A") else ord("B")
    with pytest.raises(DecryptionError):
        c.decrypt("v1.k1." + body.decode(), aad="a")
    with pytest.raises(DecryptionError):
        c.decrypt(tok, aad="b")
    with pytest.raises(DecryptionError):
        FieldCipher({"k9": os.urandom(32)}, "k9").decrypt(tok, aad="a")
    for bad in ("", "v1", "v2.k1.AAAA", "v1.k1.!!!"):
        with pytest.raises(DecryptionError):
            c.decrypt(bad)


def test_rotation_keeps_old_values_readable(ring):
    old = FieldCipher(ring, "k1").encrypt("13800010001", aad="phone")
    new_cipher = FieldCipher(ring, "k2")
    assert new_cipher.decrypt(old, aad="phone") == "13800010001"
    assert new_cipher.needs_rotation(old)
    rotated = new_cipher.rotate(old, aad="phone")
    assert rotated.startswith("v1.k2.") and not new_cipher.needs_rotation(rotated)
    assert new_cipher.decrypt(rotated, aad="phone") == "13800010001"


def test_blind_index_deterministic_domain_and_key_bound():
    k = os.urandom(32)
    bi = BlindIndex(k)
    assert bi.digest("11010519491231002x", domain="id") == bi.digest(" 11010519491231002X ", domain="id")
    assert bi.digest("x", domain="id") != bi.digest("x", domain="phone")
    assert bi.digest("x", domain="id") != BlindIndex(os.urandom(32)).digest("x", domain="id")
    assert len(bi.digest("x", domain="id")) == 64


def test_keyring_file_created_private_and_reloaded(tmp_path):
    path = tmp_path / "keys" / "fields.json"
    p1 = FieldProtection.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    p2 = FieldProtection.from_file(path)
    tok = p1.cipher.encrypt("v", aad="a")
    assert p2.cipher.decrypt(tok, aad="a") == "v"
    assert p1.blind_index.digest("v", domain="d") == p2.blind_index.digest("v", domain="d")


def test_env_spec():
    k1, k2 = generate_key(), generate_key()
    p = FieldProtection.from_env_spec(f"k1:{k1},k2:{k2}", "k2", generate_key())
    assert p.cipher.encrypt("x").startswith("v1.k2.")
    with pytest.raises(ValueError):
        load_keyring("k1:" + base64.b64encode(b"short").decode())


def test_mask_examples():
    assert mask_id_number("110101199003071234") == "110101********1234"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_name("张三丰") == "张**" and mask_name("张三") == "张*" and mask_name("张") == "*"
    assert mask_generic("abc", 2, 2) == "***"


@given(st.text(min_size=0, max_size=40), st.integers(0, 8), st.integers(0, 8))
def test_mask_properties(value, start, end):
    m = mask_generic(value, start, end)
    assert len(m) == len(value)
    if len(value) > start + end:
        assert m[:start] == value[:start] and m[len(m) - end:] == value[len(value) - end:]
        assert set(m[start:len(m) - end]) <= {"*"}
    else:
        assert set(m) <= {"*"}
