"""Validators: known examples and properties over generated identifiers."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from common.validators import (
    PROVINCES, USCC, USCC_ALPHABET, USCC_AUTHORITIES, DivisionCodeStr, MobileNumber, ResidentIdNumber,
    ValidationFailure, is_valid_resident_id, is_valid_uscc, make_uscc, normalize_mobile, parse_division_code,
    parse_resident_id, parse_uscc, resident_id_check_char,
)

TODAY = date(2026, 11, 22)


def make_id(division: str, birth: date, seq: int) -> str:
    first17 = f"{division}{birth:%Y%m%d}{seq:03d}"
    return first17 + resident_id_check_char(first17)


@pytest.mark.parametrize("value,birth,sex", [
    ("11010519491231002X", date(1949, 12, 31), "F"),
    ("11010519491231002x", date(1949, 12, 31), "F"),
    ("110105198003120112", date(1980, 3, 12), "M"),
])
def test_known_valid_ids(value, birth, sex):
    rid = parse_resident_id(value, today=TODAY)
    assert rid.birth_date == birth and rid.sex == sex and rid.number == value.upper()
    assert rid.division_code == "110105"


@pytest.mark.parametrize("value,code", [
    ("11010519491231002", "id_number.length"),
    ("1101051949123100AX", "id_number.format"),
    ("110105194912310021", "id_number.checksum"),
    (make_id("110105", date(2001, 1, 1), 1)[:10] + "0230" + "0011", "id_number.checksum"),
    ("990105198003120112", "id_number.division"),
])
def test_invalid_ids(value, code):
    with pytest.raises(ValidationFailure) as exc:
        parse_resident_id(value, today=TODAY)
    assert exc.value.code == code and exc.value.message_zh


def test_impossible_and_future_birth_dates():
    first17 = "110105" + "20010230" + "001"  # 30 February
    with pytest.raises(ValidationFailure) as exc:
        parse_resident_id(first17 + resident_id_check_char(first17), today=TODAY)
    assert exc.value.code == "id_number.birth_date"
    future = make_id("110105", TODAY + timedelta(days=1), 1)
    with pytest.raises(ValidationFailure) as exc:
        parse_resident_id(future, today=TODAY)
    assert exc.value.code == "id_number.birth_date_future"


ids = st.builds(make_id,
                st.sampled_from(sorted(PROVINCES)).map(lambda p: p + "0105"),
                st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
                st.integers(min_value=0, max_value=999))


@settings(max_examples=200)
@given(ids)
def test_generated_ids_round_trip(value):
    rid = parse_resident_id(value, today=TODAY)
    assert rid.birth_date == date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    assert rid.sex == ("M" if int(value[16]) % 2 else "F")


@settings(max_examples=200)
@given(ids, st.integers(min_value=0, max_value=16), st.integers(min_value=1, max_value=9))
def test_any_single_digit_change_is_caught(value, pos, delta):
    digit = (int(value[pos]) + delta) % 10
    mutated = value[:pos] + str(digit) + value[pos + 1:]
    assert not is_valid_resident_id(mutated, today=TODAY)


@pytest.mark.parametrize("raw", ["13800010001", "+86 138 0001 0001", "0086-138-0001-0001", "8613800010001"])
def test_mobile_normalised(raw):
    assert normalize_mobile(raw) == "13800010001"


@pytest.mark.parametrize("raw,code", [("1380001000", "phone.length"), ("12800010001", "phone.format"),
                                      ("1380001000a", "phone.format"), ("138000100012", "phone.length")])
def test_mobile_invalid(raw, code):
    with pytest.raises(ValidationFailure) as exc:
        normalize_mobile(raw)
    assert exc.value.code == code


@given(st.sampled_from("3456789"), st.text(alphabet="0123456789", min_size=9, max_size=9),
       st.sampled_from(["", "+86", "0086", "86"]))
def test_mobile_normalisation_is_idempotent(second, rest, prefix):
    number = "1" + second + rest
    once = normalize_mobile(prefix + number)
    assert once == number and normalize_mobile(once) == once


def test_known_uscc():
    assert parse_uscc("52110105ma01ab125n") == "52110105MA01AB125N"
    assert parse_uscc("91350100M000100Y43") == "91350100M000100Y43"  # a published example


@pytest.mark.parametrize("value,code", [
    ("52110105MA01AB125", "uscc.length"), ("52110105MA01AB12IN", "uscc.charset"),
    ("Z2110105MA01AB125N", "uscc.charset"), ("5A110105MA01AB125N", "uscc.authority"),
    ("52990105MA01AB125N", "uscc.division"), ("52110105MA01AB135N", "uscc.org_code"),
    ("52110105MA01AB125P", "uscc.checksum"),
])
def test_invalid_uscc(value, code):
    with pytest.raises(ValidationFailure) as exc:
        parse_uscc(value)
    assert exc.value.code == code


usccs = st.builds(
    lambda auth_type, prov, base: make_uscc(auth_type[0], auth_type[1], prov + "0105", base),
    st.sampled_from([(a, t) for a, ts in USCC_AUTHORITIES.items() for t in ts]),
    st.sampled_from(sorted(PROVINCES)),
    st.text(alphabet="0123456789ABCDEFGHJKLMNPQRTUWXY", min_size=8, max_size=8),
)


@settings(max_examples=200)
@given(usccs, st.integers(min_value=0, max_value=17), st.integers(min_value=1, max_value=30))
def test_generated_uscc_valid_and_single_change_caught(code, pos, delta):
    assert is_valid_uscc(code)
    replacement = USCC_ALPHABET[(USCC_ALPHABET.index(code[pos]) + delta) % 31]
    assert not is_valid_uscc(code[:pos] + replacement + code[pos + 1:])


@pytest.mark.parametrize("code,level,parent", [
    ("110000", "province", None), ("110100", "city", "110000"), ("110105", "district", "110100"),
    ("110105001", "street", "110105"), ("110105001001", "community", "110105001"),
    ("110105001001001", "grid", "110105001001"),
])
def test_division_levels(code, level, parent):
    d = parse_division_code(code)
    assert d.level == level and d.parent == parent and d.province == "11"


@given(st.sampled_from(sorted(PROVINCES)), st.lists(st.text(alphabet="0123456789", min_size=3, max_size=3),
                                                   min_size=1, max_size=3))
def test_division_parents_chain_to_the_district(prov, suffixes):
    code = prov + "0105" + "".join(suffixes)
    d = parse_division_code(code)
    while d.parent is not None and len(d.code) > 6:
        parent = parse_division_code(d.parent)
        assert d.code.startswith(parent.code)
        d = parent
    assert d.level == "district"


@pytest.mark.parametrize("bad", ["11010", "1101050010", "990105", "11a105"])
def test_division_invalid(bad):
    with pytest.raises(ValidationFailure):
        parse_division_code(bad)


class Form(BaseModel):
    id_number: ResidentIdNumber
    phone: MobileNumber
    uscc: USCC
    division: DivisionCodeStr


def test_pydantic_types_name_field_and_code():
    ok = Form(id_number="11010519491231002x", phone="+8613800010001", uscc="52110105MA01AB125N", division="110105")
    assert ok.id_number.endswith("X") and ok.phone == "13800010001"
    with pytest.raises(ValidationError) as exc:
        Form(id_number="110105194912310021", phone="123", uscc="52110105MA01AB125P", division="99")
    errs = {e["loc"][0]: e for e in exc.value.errors()}
    assert errs["id_number"]["type"] == "id_number.checksum" and "校验位" in errs["id_number"]["msg"]
    assert errs["phone"]["type"] == "phone.length" and errs["uscc"]["type"] == "uscc.checksum"
    assert errs["division"]["type"] == "division.format"
    assert errs["id_number"]["ctx"]["message_en"]


# ---- money and instants (issue 31: the schema states what the types enforce) -------------------------------------

def test_money_takes_fen_as_a_decimal_string_or_a_number():
    from decimal import Decimal

    from pydantic import TypeAdapter

    from common.validators import Money

    money = TypeAdapter(Money)
    for value, want in (("1500.50", "1500.50"), ("0", "0.00"), (7, "7.00"), (1.5, "1.50"), (35 * 0.01, "0.35"),
                        ("999999999999.99", "999999999999.99")):
        assert money.validate_python(value) == Decimal(want), value
    for value in ("1.005", "1e2", " 1", "-1", "+1", "0001000000000000", 0.005, -1, 10 ** 12, True, None,
                  float("nan"), float("inf"), "１２", 1e30, -1e30):  # (a huge float: a 422, not the quantize's 500)
        with pytest.raises(ValidationError):
            money.validate_python(value)
    schema = money.json_schema()
    assert schema["anyOf"][0]["maximum"] == 999999999999.99 and schema["anyOf"][0]["multipleOf"] == 0.01
    assert schema["anyOf"][1]["pattern"] == "^[0-9]{1,12}(\\.[0-9]{1,2})?$"


@pytest.mark.parametrize("value", ["12", 12, 1767225600.5, "2026-11-01", "2026-11-01 08:00:00+08:00", "now"])
def test_instant_is_an_rfc3339_date_time_only(value):
    from pydantic import TypeAdapter

    from common.validators import Instant

    with pytest.raises(ValidationError):
        TypeAdapter(Instant).validate_python(value)
    assert TypeAdapter(Instant).validate_python("2026-11-01T08:00:00+08:00").utcoffset().total_seconds() == 8 * 3600
