"""Components a test may need that a developer's machine may lack: PostgreSQL, Redis, the gateway's edge (nginx
with its Lua module) and a browser (Debian's chromium with playwright).

Without one a test skips with the reason. `ONENET_REQUIRE` (comma-separated, e.g. `postgres,redis,edge,browser,client-tools`,
as `.ci/run` sets it) names the components the run must have: a test that would skip for one of those fails
instead, naming it, so a broken install step cannot read as a pass.
"""
from __future__ import annotations

import os
from typing import NoReturn

import pytest

COMPONENTS = {
    "postgres": "PostgreSQL (ONENET_TEST_POSTGRES_URL)",
    "redis": "Redis (ONENET_TEST_REDIS_URL)",
    "edge": "the gateway's edge: Debian's nginx with libnginx-mod-http-lua, lua-resty-core, lua-cjson, lua-nginx-redis",
    "browser": "a browser: Debian's chromium (ONENET_TEST_CHROMIUM) driven by playwright",
    "client-tools": "the typed-client generator's venv .venv-tools (`make client-tools`, tools/client-requirements.txt)",
}


def required() -> set[str]:
    names = {n.strip() for n in os.environ.get("ONENET_REQUIRE", "").split(",") if n.strip()}
    unknown = names - set(COMPONENTS)
    if unknown:
        raise pytest.UsageError(f"ONENET_REQUIRE names unknown components {sorted(unknown)}; "
                                f"known: {', '.join(sorted(COMPONENTS))}")
    return names


def missing(component: str, reason: str) -> NoReturn:
    """Skip the running test for want of `component`, or fail it when this run requires the component."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}")
    if component in required():
        pytest.fail(f"required component missing ({component}, ONENET_REQUIRE): {COMPONENTS[component]}: {reason}",
                    pytrace=False)
    pytest.skip(reason)


def needs(component: str, available: bool, reason: str) -> pytest.MarkDecorator:
    """A mark for a test (or a module's `pytestmark`) that needs `component`; `check_marks` (conftest's
    `pytest_runtest_setup`) skips it, or fails it, when the component is not available."""
    return pytest.mark.needs_component(component=component, available=available, reason=reason)


def check_marks(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs_component"):
        if not mark.kwargs["available"]:
            missing(mark.kwargs["component"], mark.kwargs["reason"])
