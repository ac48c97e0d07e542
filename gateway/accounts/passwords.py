"""Password policy and hashing (argon2id, the hasher of gateway/identity/tokens.py).

A password is refused when it is shorter than `MIN_LENGTH` (12) or longer than 128 characters, has fewer than 5
distinct characters, contains the username, or is a common/breached password (NIST SP 800-63B 5.1.1.2's
blocklist): the 30,000 most common passwords of leaked corpora bundled in the `zxcvbn` package (its
`frequency_lists`, read once; no download at run time) with this package's `common_passwords.csv` (common Chinese
patterns and the platform's own names that list lacks), compared case-insensitively and also with the digits and
symbols at its ends removed ("Password2026!" is "password"). Each refusal is a 422 naming the field.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from common.errors import invalid

MIN_LENGTH = 12
MAX_LENGTH = 128


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The blocklist, lower-case: zxcvbn's password frequency list and the bundled Chinese-specific one."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    text = (Path(__file__).with_name("common_passwords.csv")).read_text(encoding="utf-8")
    own = (line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"]) | frozenset(own)


_ENDS = re.compile(r"^[\d\W_]+|[\d\W_]+$")


def check_password(password: str, *, username: str | None = None, field: str = "password") -> None:
    """Raise a 422 problem naming `field` when the password breaks the policy."""
    pw = unicodedata.normalize("NFKC", password)
    if len(pw) < MIN_LENGTH:
        raise invalid(field, "password.too_short", f"密码至少需要 {MIN_LENGTH} 个字符",
                      f"The password must have at least {MIN_LENGTH} characters")
    if len(pw) > MAX_LENGTH:
        raise invalid(field, "password.too_long", f"密码最多 {MAX_LENGTH} 个字符",
                      f"The password may have at most {MAX_LENGTH} characters")
    lowered = pw.lower()
    core = _ENDS.sub("", lowered)
    listed = common_passwords()
    if lowered in listed or core in listed or (core and len(set(core)) <= 2):
        raise invalid(field, "password.common", "该密码过于常见或已在泄露密码库中，请换一个",
                      "This password is common or known from breaches; choose another")
    if len(set(pw)) < 5:
        raise invalid(field, "password.too_simple", "密码过于简单（不同字符太少）",
                      "The password is too simple (too few distinct characters)")
    if username and len(username) >= 3 and username.lower() in lowered:
        raise invalid(field, "password.contains_username", "密码不能包含用户名",
                      "The password must not contain the username")
