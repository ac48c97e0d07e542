"""Where `make fuzz`'s full check set (schemathesis' `--checks all`, with ONENET_FUZZ_CHECKS=all) is not applied,
each with its reason: checks that need what a single generated call does not have, and refusals no schema can
express. The README's Reliability section is to list the same (keep them together). `(check, where)`: `where` is
"*" or the start of "METHOD /path".
"""
from __future__ import annotations

EXCEPTIONS: dict[tuple[str, str], str] = {
    ("ignored_auth", "*"): "every case is sent with a real token of the role under test (the fuzzer's own "
                           "Authorization is replaced), so a 'generated invalid auth' is never what was sent; bad "
                           "tokens on every endpoint are tested by tests/authz/test_tokens.py",
}
