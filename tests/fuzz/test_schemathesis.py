"""Schemathesis against the platform's aggregated OpenAPI, through the gateway, with tokens of several roles.

The whole platform runs in this process (tests/inprocess.py: the gateway in front of the four services and the
department emulators, each on its own migrated SQLite database with the demo district seeded). For every
operation of /services, /residents, /matching, /metrics, /open311 (svc_services) and the gateway's own /auth and
/exchange, hypothesis draws cases (valid and invalid input) and a caller among the roles, and each answer must:

- never be a 5xx;
- conform to the response schema the operation declares for that status (`response_schema_conformance`);
- be `application/problem+json` with `type`, `title`, `status` and `code` whenever it is an error.

`make test` runs a bounded pass (ONENET_FUZZ_EXAMPLES cases per operation, a few roles, no shrinking);
`make fuzz` runs many more cases with every role and check (`ONENET_FUZZ_EXAMPLES=100 ONENET_FUZZ_ALL_ROLES=1
ONENET_FUZZ_CHECKS=all`); `ONENET_FUZZ_ONLY` (path prefixes, comma-separated) runs a part of it and
`ONENET_FUZZ_PROGRESS` (a file) records each operation-mode's outcome as it ends.
"""
from __future__ import annotations

import os
import time
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings, strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from tests.inprocess import USERS, PlatformThread  # noqa: E402

EXAMPLES = int(os.environ.get("ONENET_FUZZ_EXAMPLES", "3"))
# `make fuzz`: every check schemathesis has (its CLI's `--checks all`), less the exceptions below
ALL_CHECKS = os.environ.get("ONENET_FUZZ_CHECKS", "") == "all"
ONLY = tuple(p for p in os.environ.get("ONENET_FUZZ_ONLY", "").split(",") if p)  # e.g. "/open311/" while working
ALL_ROLES = os.environ.get("ONENET_FUZZ_ALL_ROLES", "") not in ("", "0", "false")
# a file each operation-mode's outcome is appended to as it ends (a long run reports before its end)
PROGRESS = os.environ.get("ONENET_FUZZ_PROGRESS", "")
FAST_ROLES = ("resident1", "staff1", "ops1", "proxy1")
ROLES = tuple(USERS) if ALL_ROLES else FAST_ROLES
PREFIXES = ("/services/", "/residents/", "/matching/", "/metrics/", "/open311/", "/auth/", "/exchange/")
PROBLEM_REQUIRED = ("type", "title", "status", "code")


def problem_json(ctx, response, case):
    """Every error answer is RFC 9457 problem+json (the platform's own error convention)."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    if case.operation.path.startswith("/open311/"):
        return None  # GeoReport v2 prescribes its own error list, `[{"code", "description"}]`
    ctype = response.headers.get("content-type", [""])
    ctype = (ctype[0] if isinstance(ctype, list) else ctype).split(";")[0].strip()
    assert ctype == "application/problem+json", f"error {response.status_code} answered as {ctype!r}"
    body = response.json()
    missing = [k for k in PROBLEM_REQUIRED if k not in body]
    assert not missing, f"problem without {missing}"
    assert body["status"] == response.status_code, f"problem status {body['status']} != {response.status_code}"
    return True


def _describe(exc: BaseException) -> str:
    subs = getattr(exc, "exceptions", None)
    text = "\n".join(str(e) for e in subs) if subs else str(exc)
    return text[:1200]


def _send(pt: PlatformThread, case, role: str) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url="http://gw", headers=pt.platform.headers(role))
    kwargs.pop("cookies", None)
    prepared = requests.Request(**kwargs).prepare()
    parts = urlsplit(prepared.url)
    headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("connection", "content-length")}
    body = prepared.body.encode() if isinstance(prepared.body, str) else (prepared.body or b"")
    # requests leaves control characters in a generated path parameter as they are; send them percent-encoded
    target = quote(unquote(parts.path), safe="/!$&'()*+,;=:@~-._") + (f"?{parts.query}" if parts.query else "")
    return pt.request(prepared.method, target, headers=headers, content=body)


# A notification stream answering a case holds its connection for its lifetime (ADR 0017): a short one here, so a
# case with the Accept it declares gets its whole answer in a fraction of a second
STREAM_ENV = {"ONENET_NOTIFY_STREAM_LIFETIME_SECONDS": "0.3", "ONENET_NOTIFY_STREAM_HEARTBEAT_SECONDS": "0.1"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in STREAM_ENV}
    os.environ.update({k: os.environ.get(k) or v for k, v in STREAM_ENV.items()})
    pt = PlatformThread(tmp_path_factory.mktemp("fuzz"))
    try:
        with pt:
            yield pt
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def schema(platform):
    # the first read aggregates every service's document: on a loaded machine that takes longer than a call
    r = platform.run(platform.platform.client.request("GET", "/openapi.json"), timeout=300)
    assert r.status_code == 200
    doc = r.json()
    assert not doc["info"].get("x-onenet-unavailable"), doc["info"]
    loaded = schemathesis.openapi.from_dict(doc)
    # every case is sent with the role's real token (`_send`), so a case "without the security header" is never
    # what is sent (see exceptions.py's ignored_auth); the query stays open: an unknown parameter is ignored, as
    # HTTP and OpenAPI allow (a parameter list is not a closed set), so extra ones are not negative data
    loaded.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)
    # invalid data refused for its size is refused: 413 (a body over the gateway's limit, e.g. an array past its
    # maxItems of 20,000 ids) beside schemathesis' own list of rejections
    rejection = loaded.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]  # a new list: the default is shared
    return loaded


def _operations(schema):
    ops = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith(PREFIXES) and (not ONLY or op.path.startswith(ONLY)):
            ops.append(op)
    return ops


# pydantic's error types for what JSON Schema says (type, required, length, pattern, range, enum, extra fields):
# schema-valid data refused with one of them means the document and the code disagree
SCHEMA_ERROR_TYPES = frozenset({
    "missing", "extra_forbidden", "string_type", "int_type", "int_parsing", "int_from_float", "float_type",
    "float_parsing", "bool_type", "bool_parsing", "string_too_short", "string_too_long", "string_pattern_mismatch",
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of", "too_short", "too_long",
    "literal_error", "enum", "list_type", "dict_type", "model_type", "model_attributes_type", "date_parsing",
    "date_from_datetime_parsing", "datetime_parsing", "datetime_from_date_parsing", "time_parsing", "uuid_parsing",
    "uuid_type", "decimal_parsing", "decimal_type", "decimal_max_digits", "decimal_max_places", "url_parsing",
    "json_invalid", "union_tag_invalid", "union_tag_not_found", "string_unicode", "bytes_type", "set_type",
    "tuple_type", "none_required", "is_instance_of", "frozen_set_type"})


def _rule_refusal(response, case) -> bool:
    """A schema-valid case refused by a rule no schema expresses (tests/fuzz/exceptions.py, "rule refusals"): a
    422 problem whose every error is a rule's own code (a reference to an object that does not exist, two fields
    that must agree, a check digit: `common.errors.invalid`, a validator's `value_error`), or whose cursor is not
    one this server issued; never one of pydantic's schema-level types."""
    if response.status_code != 422:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict) or body.get("status") != 422:
        return False
    errors = body.get("errors") or []
    return not any(isinstance(e, dict) and e.get("code") in SCHEMA_ERROR_TYPES for e in errors)


def positive_data_acceptance(ctx, response, case):
    """schemathesis' check of that name, less the rule refusals above (the named exception)."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance as upstream

    try:
        return upstream(ctx, response, case)
    except Exception:
        if _rule_refusal(response, case):
            return None
        raise


def _checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    if not ALL_CHECKS:
        return [not_a_server_error, response_schema_conformance, problem_json]
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    return [*(positive_data_acceptance if c.__name__ == "positive_data_acceptance" else c for c in CHECKS.get_all()),
            problem_json]


def _excluded(checks, endpoint: str):
    from tests.fuzz.exceptions import EXCEPTIONS

    return [c for c in checks if any(name == c.__name__ and (where == "*" or endpoint.startswith(where))
                                     for (name, where) in EXCEPTIONS)]


def test_fuzz_every_operation_through_the_gateway(platform, schema):
    from schemathesis import GenerationMode

    ops = _operations(schema)
    prefixes_seen = {op.path.split("/")[1] for op in ops}
    assert ONLY or {"services", "residents", "matching", "metrics", "auth", "exchange"} <= prefixes_seen
    every = _checks()
    failures: dict[str, str] = {}
    answers: dict[str, set[str]] = {}  # what the failing cases were answered, for the report
    spent: dict[str, float] = {}
    run_settings = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not ALL_ROLES,
                            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                            print_blob=False)
    for op in ops:
        endpoint = f"{op.method.upper()} {op.path}"
        checks = [c for c in every if c not in _excluded(every, endpoint)]
        # a string path parameter has no invalid value: negative cases need a body or a query to break
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if len(op.body) or len(op.query) else [])
        for mode in modes:
            @run_settings
            @given(case=op.as_strategy(generation_mode=mode), role=st.sampled_from(ROLES))
            def run(case, role):
                response = _send(platform, case, role)
                try:
                    case.validate_response(response, checks=checks)
                except BaseException:
                    answers.setdefault(f"{case.method.upper()} {case.path}", set()).add(f"{response.status_code} {response.text[:160]}")
                    raise

            t0 = time.perf_counter()
            name, outcome = f"{op.method.upper()} {op.path} [{mode.value}]", "ok"
            try:
                run()
            except Unsatisfiable:
                outcome = "unsatisfiable"
                continue  # no invalid input exists for this operation (e.g. only free-form path strings)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure, report them together
                failures[name] = _describe(exc)
                outcome = "FAILED\n" + failures[name]
            finally:
                spent[name] = time.perf_counter() - t0
                if PROGRESS:
                    with open(PROGRESS, "a", encoding="utf-8") as fh:
                        fh.write(f"{spent[name]:7.1f}s {name} {outcome}\n")
    if os.environ.get("ONENET_FUZZ_TIMES"):
        for k, v in sorted(spent.items(), key=lambda kv: -kv[1])[:25]:
            print(f"{v:7.2f}s {k}")
    if os.environ.get("ONENET_FUZZ_REPORT"):
        import json
        with open(os.environ["ONENET_FUZZ_REPORT"], "w") as fh:
            json.dump({"failures": failures, "answers": {k: sorted(v)[:5] for k, v in answers.items()}}, fh,
                      ensure_ascii=False, indent=1)
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
