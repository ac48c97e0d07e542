"""Validators for Chinese identifiers: resident ID number (GB 11643), mobile number, unified social credit
code (GB 32100, with its embedded organisation code GB 11714) and administrative division codes (GB/T 2260).

Each parser returns a normalised value or raises `ValidationFailure(code, message_zh, message_en)`; the
Pydantic annotated types at the bottom turn that into a 422 that names the field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import AfterValidator, AllowInfNan, AwareDatetime, BeforeValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError


_SPACES = " \t\n\r\f\v"  # the whitespace a value may carry around it: ASCII's, as the patterns below say


class ValidationFailure(ValueError):
    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en


# ---- administrative divisions -------------------------------------------------------------------------------

PROVINCES = {
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43",
    "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
}
DivisionLevel = Literal["province", "city", "district", "street", "community", "grid"]
_LEVEL_BY_LENGTH = {9: "street", 12: "community", 15: "grid"}


@dataclass(frozen=True)
class DivisionCode:
    code: str
    level: DivisionLevel
    province: str
    parent: str | None


def parse_division_code(value: str) -> DivisionCode:
    """6 digits (GB/T 2260: province 110000, city 110100, district 110101) extended locally by 3 digits per
    level: street (9), community (12), grid (15)."""
    v = (value or "").strip(_SPACES)
    if not (v.isascii() and v.isdigit()) or len(v) not in (6, 9, 12, 15):
        raise ValidationFailure("division.format", "区划代码应为 6、9、12 或 15 位数字",
                                "A division code has 6, 9, 12 or 15 digits")
    if v[:2] not in PROVINCES:
        raise ValidationFailure("division.province", "区划代码的省级部分不存在", "Unknown province in division code")
    if len(v) == 6:
        if v[2:] == "0000":
            return DivisionCode(v, "province", v[:2], None)
        if v[4:] == "00":
            return DivisionCode(v, "city", v[:2], v[:2] + "0000")
        return DivisionCode(v, "district", v[:2], v[:4] + "00")
    return DivisionCode(v, _LEVEL_BY_LENGTH[len(v)], v[:2], v[:-3])


# ---- resident ID number (GB 11643-1999) ---------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"^\d{17}[\dX]$", re.ASCII)  # ASCII digits: int() would read others too


@dataclass(frozen=True)
class ResidentId:
    number: str
    division_code: str
    birth_date: date
    sex: Literal["M", "F"]


def resident_id_check_char(first17: str) -> str:
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS)) % 11]


def parse_resident_id(value: str, *, today: date | None = None) -> ResidentId:
    v = (value or "").strip(_SPACES).upper()
    if len(v) != 18:
        raise ValidationFailure("id_number.length", "身份证号应为 18 位", "An ID number has 18 characters")
    if not _ID_RE.match(v):
        raise ValidationFailure("id_number.format", "身份证号前 17 位应为数字，末位为数字或 X",
                                "17 digits then a digit or X")
    if v[:2] not in PROVINCES:
        raise ValidationFailure("id_number.division", "身份证号的地区码不存在", "Unknown region code in the ID number")
    if resident_id_check_char(v[:17]) != v[17]:
        raise ValidationFailure("id_number.checksum", "身份证号校验位不正确", "The ID number's check character is wrong")
    try:
        birth = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        raise ValidationFailure("id_number.birth_date", "身份证号中的出生日期不存在",
                                "The birth date in the ID number does not exist") from None
    if birth < date(1900, 1, 1):
        raise ValidationFailure("id_number.birth_date", "身份证号中的出生日期早于 1900 年",
                                "The birth date is before 1900")
    if today is not None and birth > today:  # the caller's clock; without one the format alone is checked
        raise ValidationFailure("id_number.birth_date_future", "身份证号中的出生日期在未来",
                                "The birth date is in the future")
    return ResidentId(v, v[:6], birth, "M" if int(v[16]) % 2 else "F")


def is_valid_resident_id(value: str, *, today: date | None = None) -> bool:
    try:
        parse_resident_id(value, today=today)
    except ValidationFailure:
        return False
    return True


# ---- mobile number ------------------------------------------------------------------------------------------

_PHONE_SEPARATORS = re.compile(r"[\s\-()]", re.ASCII)


def normalize_mobile(value: str) -> str:
    """Mainland mobile numbers: 11 digits starting 13–19; a +86 / 0086 / 86 prefix, spaces and hyphens go."""
    v = _PHONE_SEPARATORS.sub("", value or "")
    for prefix in ("+86", "0086"):
        if v.startswith(prefix):
            v = v[len(prefix):]
    if len(v) == 13 and v.startswith("86"):
        v = v[2:]
    if not (v.isascii() and v.isdigit()):  # ASCII digits: str.isdigit() takes every script's
        raise ValidationFailure("phone.format", "手机号只能包含数字", "A mobile number has digits only")
    if len(v) != 11:
        raise ValidationFailure("phone.length", "手机号应为 11 位", "A mobile number has 11 digits")
    if v[0] != "1" or v[1] not in "3456789":
        raise ValidationFailure("phone.format", "手机号应以 13–19 开头", "A mobile number starts with 13–19")
    return v


# ---- unified social credit code (GB 32100-2015) -------------------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
# registration authority -> the organisation types it may register
USCC_AUTHORITIES = {"1": "1239", "2": "19", "3": "1249", "4": "12", "5": "1239", "6": "129", "7": "129",
                    "8": "19", "9": "123", "A": "19", "N": "1239", "Y": "1"}


def uscc_check_char(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(base8: str) -> str:
    """GB 11714 organisation code check character (letters count as 10–35)."""
    total = sum(int(c, 36) * w for c, w in zip(base8, _ORG_WEIGHTS))
    v = 11 - total % 11
    return "X" if v == 10 else "0" if v == 11 else str(v)


def make_uscc(authority: str, type_code: str, division: str, org_base8: str) -> str:
    first17 = f"{authority}{type_code}{division}{org_base8}{org_code_check_char(org_base8)}"
    return first17 + uscc_check_char(first17)


def parse_uscc(value: str) -> str:
    v = (value or "").strip(_SPACES).upper()
    if len(v) != 18:
        raise ValidationFailure("uscc.length", "统一社会信用代码应为 18 位", "A unified social credit code has 18 characters")
    if any(c not in USCC_ALPHABET for c in v):
        raise ValidationFailure("uscc.charset", "统一社会信用代码含有不允许的字符（不使用 I、O、Z、S、V）",
                                "Characters outside the code's alphabet (no I, O, Z, S, V)")
    allowed = USCC_AUTHORITIES.get(v[0])
    if allowed is None or v[1] not in allowed:
        raise ValidationFailure("uscc.authority", "登记管理部门代码或机构类别代码不正确",
                                "Wrong registration authority or organisation type")
    if not v[2:8].isdigit() or v[2:4] not in PROVINCES:
        raise ValidationFailure("uscc.division", "统一社会信用代码中的行政区划码不正确", "Wrong division code in the credit code")
    if not v[8:16].isalnum() or org_code_check_char(v[8:16]) != v[16]:
        raise ValidationFailure("uscc.org_code", "统一社会信用代码中的组织机构代码校验不正确",
                                "The embedded organisation code's check character is wrong")
    if uscc_check_char(v[:17]) != v[17]:
        raise ValidationFailure("uscc.checksum", "统一社会信用代码校验位不正确", "The credit code's check character is wrong")
    return v


def is_valid_uscc(value: str) -> bool:
    try:
        parse_uscc(value)
    except ValidationFailure:
        return False
    return True


# ---- Pydantic types -----------------------------------------------------------------------------------------

def _pydantic(fn):
    def check(value: str) -> str:
        try:
            result = fn(value)
        except ValidationFailure as exc:
            raise PydanticCustomError(exc.code, exc.message_zh, {"message_en": exc.message_en}) from None
        return result

    return check


# What each parser can accept, as a JSON Schema (ECMA-262) pattern in the OpenAPI documents, so a generated client
# or a fuzzer knows the form; a string outside it is always refused. Inside it a check character, a birth date or
# an organisation type can still be wrong: rules no pattern states (checked by the parsers above).
_W = "[ \\t\\n\\r\\f\\v]*"
_PROV = "(?:" + "|".join(sorted(PROVINCES)) + ")"
_SEP = "[ \\t\\n\\r\\f\\v()-]*"
ID_NUMBER_PATTERN = f"^{_W}{_PROV}[0-9]{{15}}[0-9Xx]{_W}$"
MOBILE_PATTERN = (f"^{_SEP}(?:\\+{_SEP}8{_SEP}6{_SEP})?(?:0{_SEP}0{_SEP}8{_SEP}6{_SEP})?(?:8{_SEP}6{_SEP})?"
                  f"1{_SEP}[3-9](?:{_SEP}[0-9]){{9}}{_SEP}$")
USCC_PATTERN = f"^{_W}[1-9ANYany][0-9A-HJ-NPQRTUWXYa-hj-npqrtuwxy]{{17}}{_W}$"
DIVISION_PATTERN = f"^{_W}{_PROV}(?:[0-9]{{4}}|[0-9]{{7}}|[0-9]{{10}}|[0-9]{{13}}){_W}$"


def _declared(pattern: str, description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": pattern, "description": description})


ResidentIdNumber = Annotated[str, AfterValidator(_pydantic(lambda v: parse_resident_id(v).number)),
                             _declared(ID_NUMBER_PATTERN, "居民身份证号（GB 11643，18 位，校验位）")]
MobileNumber = Annotated[str, AfterValidator(_pydantic(normalize_mobile)),
                         _declared(MOBILE_PATTERN, "手机号（11 位，13–19 开头；可带 +86、空格、连字符）")]
USCC = Annotated[str, AfterValidator(_pydantic(parse_uscc)),
                 _declared(USCC_PATTERN, "统一社会信用代码（GB 32100，18 位，校验位）")]
DivisionCodeStr = Annotated[str, AfterValidator(_pydantic(lambda v: parse_division_code(v).code)),
                            _declared(DIVISION_PATTERN, "区划代码（6、9、12 或 15 位）")]


# Place codes as the platform nests them: a street (9 digits), a community (12), a grid (15), a building (the
# grid's code and a local suffix, 16 to 24; 18 where a household's building is meant) and any place (a GB/T 2260
# code with local suffixes, 6 to 24). ASCII digits only: pydantic (and Python's `re`) read `\d` as any Unicode
# digit, a JSON Schema reader as 0-9, and a code is compared as stored. Every schema and parameter takes one of
# these types; a pattern of its own with `\d` is a defect.
COMMUNITY_CODE_PATTERN = "^[0-9]{12}$"
GRID_CODE_PATTERN = "^[0-9]{15}$"
BUILDING_CODE_PATTERN = "^[0-9]{16,24}$"
PLACE_CODE_PATTERN = "^[0-9]{6,24}$"
AREA_CODE_PATTERN = "^[0-9]{6,15}$"  # a division down to a grid: a scope, or the prefix a list filters on
COMMUNITY_OR_GRID_PATTERN = "^[0-9]{12}([0-9]{3})?$"
REACH_CODE_PATTERN = "^[0-9]{12}([0-9]{3}([0-9]{3})?)?$"  # a community, a grid or a (18-digit) building
GRID_OR_BUILDING_PATTERN = "^[0-9]{15}([0-9]{3})?$"
SURVEY_SCOPE_PATTERN = "^[0-9]{9}([0-9]{3}([0-9]{3})?)?$"  # a street, a community or a grid
STREET_OR_BELOW_PATTERN = "^[0-9]{9,24}$"
GRID_OR_BELOW_PATTERN = "^[0-9]{15,24}$"
QUARTER_PATTERN = "^[0-9]{4}-Q[1-4]$"
CommunityCode = Annotated[str, StringConstraints(pattern=COMMUNITY_CODE_PATTERN)]
GridCode = Annotated[str, StringConstraints(pattern=GRID_CODE_PATTERN)]
BuildingCode = Annotated[str, StringConstraints(pattern=BUILDING_CODE_PATTERN)]
PlaceCode = Annotated[str, StringConstraints(pattern=PLACE_CODE_PATTERN)]
AreaCode = Annotated[str, StringConstraints(pattern=AREA_CODE_PATTERN)]
CommunityOrGridCode = Annotated[str, StringConstraints(pattern=COMMUNITY_OR_GRID_PATTERN)]
ReachCode = Annotated[str, StringConstraints(pattern=REACH_CODE_PATTERN)]
GridOrBuildingCode = Annotated[str, StringConstraints(pattern=GRID_OR_BUILDING_PATTERN)]
SurveyScopeCode = Annotated[str, StringConstraints(pattern=SURVEY_SCOPE_PATTERN)]
StreetOrBelowCode = Annotated[str, StringConstraints(pattern=STREET_OR_BELOW_PATTERN)]
GridOrBelowCode = Annotated[str, StringConstraints(pattern=GRID_OR_BELOW_PATTERN)]
Quarter = Annotated[str, StringConstraints(pattern=QUARTER_PATTERN)]  # 2026-Q4


# ---- numbers and instants as the database and comparisons can take them ------------------------------------

INT32_MAX = 2 ** 31 - 1
# A version number as its INTEGER column holds it (32 bits on PostgreSQL): beyond that a 422, not an overflow.
VersionNumber = Annotated[int, Ge(1), Le(INT32_MAX)]
# An integer as JSON Schema's `integer` is one: a number without a fraction (157 or 157.0), never a string ("157")
# nor a boolean, both of which pydantic's lax int would take.
def _json_number(value: object) -> object:
    if isinstance(value, (bool, str, bytes)):
        raise PydanticCustomError("int_type", "应为整数", {"message_en": "Must be an integer"})
    return value


JSON_INTEGER = BeforeValidator(_json_number)  # after any bounds: Annotated[int, Field(ge=0), JSON_INTEGER]
JsonInteger = Annotated[int, JSON_INTEGER]
# NaN and ±infinity (JSON's 1e309 parses as infinity) are no value to store or compare against.
FiniteFloat = Annotated[float, AllowInfNan(False)]
# A time compared with stored UTC instants: without an offset it names no instant (a 422, not a TypeError). As its
# schema says (`format: date-time`), an RFC 3339 date-time string only: pydantic alone would read a number, or a
# query's "12", as a Unix timestamp (one without its offset is left to AwareDatetime, which names it timezone_aware).
RFC3339_DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?$")


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):
        return value  # from code, not from a request
    if not (isinstance(value, str) and RFC3339_DATETIME.match(value)):
        raise PydanticCustomError("datetime_format", "应为带时区偏移的 RFC 3339 时间，如 2026-01-01T08:00:00+08:00",
                                  {"message_en": "Must be an RFC 3339 date-time with an offset"})
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


# ---- money ----------------------------------------------------------------------------------------------------

# An amount in yuan as a NUMERIC(14, 2) column holds it: 0 to 999,999,999,999.99, to the fen. As a decimal string
# (the exact form, and how the platform answers one) or a JSON number; a number is a binary float, so one within a
# float's rounding of a whole fen (0.35000000000000003, what 35 × 0.01 gives) is that fen, and anything else with a
# third decimal place is refused. The schema states the same: a string of that pattern, or a number that is a
# multiple of 0.01 within the range.
MONEY_MAX = Decimal("999999999999.99")
MONEY_PATTERN = "^[0-9]{1,12}(\\.[0-9]{1,2})?$"
_MONEY_RE = re.compile(MONEY_PATTERN)
_FEN = Decimal("0.01")


def _money(value: object) -> Decimal:
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        if not _MONEY_RE.match(value):
            raise PydanticCustomError("string_pattern_mismatch", "金额应为至多两位小数的非负数，如 1500.50",
                                      {"message_en": "An amount is a non-negative number with at most 2 decimals",
                                       "pattern": MONEY_PATTERN})
        amount = Decimal(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("decimal_type", "金额应为数字或十进制数字串",
                                  {"message_en": "An amount is a number or a decimal string"})
    elif isinstance(value, int):
        amount = Decimal(value)
    else:
        if value != value or value in (float("inf"), float("-inf")):
            raise PydanticCustomError("finite_number", "金额应为有限数", {"message_en": "An amount is a finite number"})
        amount = Decimal(repr(value))
        if abs(amount) <= MONEY_MAX:  # (beyond, quantize would exceed the context's precision; refused below)
            fen = amount.quantize(_FEN)
            if amount != fen and abs(amount - fen) <= abs(amount) * Decimal("1e-12"):
                amount = fen  # a float's rounding of a whole fen
    if amount < 0:
        raise PydanticCustomError("greater_than_equal", "金额不能为负", {"message_en": "An amount is not negative"})
    if amount > MONEY_MAX:
        raise PydanticCustomError("less_than_equal", "金额超出上限 999999999999.99",
                                  {"message_en": "At most 999999999999.99"})
    if amount != amount.quantize(_FEN):
        raise PydanticCustomError("decimal_max_places", "金额至多两位小数", {"message_en": "At most 2 decimal places"})
    return amount.quantize(_FEN)


Money = Annotated[Decimal, BeforeValidator(_money), WithJsonSchema({
    "anyOf": [{"type": "number", "minimum": 0, "maximum": float(MONEY_MAX), "multipleOf": 0.01},
              {"type": "string", "pattern": MONEY_PATTERN}],
    "description": "金额（元，至多两位小数；0 至 999999999999.99）"})]
