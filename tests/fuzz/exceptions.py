"""Where `make fuzz`'s full check set (schemathesis' `--checks all`, with ONENET_FUZZ_CHECKS=all) is not applied,
each with its reason: checks that need what a single generated call does not have, and refusals no schema can
express. The README's contract section lists the same (keep them together). `(check, where)`: `where` is
"*" or the start of "METHOD /path".

Besides these, two rules of the run itself (tests/fuzz/test_schemathesis.py):
- rule refusals: a schema-valid case answered 422 by a rule no JSON Schema states (an object the field names does
  not exist, two fields that must agree, a check digit, a cursor this server did not issue) passes
  `positive_data_acceptance`; a 422 naming one of pydantic's schema-level error types (type, required, length,
  pattern, range, enum, extra field) still fails it, being a document that disagrees with the code;
- the query is open: unknown query parameters are ignored (HTTP and OpenAPI do not close a parameter list), so
  the fuzzer does not send extra ones as negative data; security parameters are not generated either (the
  role's token is sent on every case, see ignored_auth).
"""
from __future__ import annotations

EXCEPTIONS: dict[tuple[str, str], str] = {
    ("ignored_auth", "*"): "every case is sent with a real token of the role under test (the fuzzer's own "
                           "Authorization is replaced), so a 'generated invalid auth' is never what was sent; bad "
                           "tokens on every endpoint are tested by tests/authz/test_tokens.py",
    ("positive_data_acceptance", "POST /auth/v1/token"): "OAuth 2.0's token endpoint: which form fields a grant "
                           "needs depends on grant_type (password: username and password; sms: phone and code; "
                           "client_credentials: client_id and secret), and RFC 6749 §5.2 answers a missing one "
                           "400 invalid_request, not 422",
    ("positive_data_acceptance", "POST /services/v1/requests/{request_id}/transitions"): "the version seen is "
                           "required in one of two places, the body's `version` or the If-Match header (its "
                           "pattern declared); with neither the answer is 428 (RFC 6585 §3), a rule relating a "
                           "body field to a header that no OpenAPI schema can state",
    ("positive_data_acceptance", "GET /open311/v2/requests.{fmt}"): "GeoReport's window: an `end_date` before "
                           "its `start_date` is refused 400 (svc_services.open311.contract), a rule relating two "
                           "query parameters that no OpenAPI schema can state; each one's own format is declared",
}
