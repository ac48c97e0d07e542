"""ONENET_REQUIRE: a test that would skip for want of a component fails instead when the run requires it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = '''
from tests.components import missing, needs

needs_redis = needs("redis", False, "no Redis here")


@needs_redis
def test_marked():
    pass


def test_called():
    missing("postgres", "no PostgreSQL here")
'''


def _run(tmp_path, require: str | None) -> subprocess.CompletedProcess:
    probe = tmp_path / "test_probe_components.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "ONENET_REQUIRE"}
    if require is not None:
        env["ONENET_REQUIRE"] = require
    # the suite's own conftest as a plugin: its hooks are what is tested
    return subprocess.run([sys.executable, "-m", "pytest", str(probe), "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-p", "no:xdist",
                           "-q", "-rsfE", f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)


def test_without_require_missing_components_skip_with_their_reason(tmp_path):
    r = _run(tmp_path, None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SKIPPED") == 2 and "no Redis here" in r.stdout and "no PostgreSQL here" in r.stdout


def test_required_components_fail_naming_the_component(tmp_path):
    r = _run(tmp_path, "postgres,redis")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "required component missing (redis" in r.stdout and "required component missing (postgres" in r.stdout


def test_only_the_required_ones_fail(tmp_path):
    r = _run(tmp_path, "redis")
    assert r.returncode == 1
    assert "required component missing (redis" in r.stdout
    assert r.stdout.count("SKIPPED") == 1 and "no PostgreSQL here" in r.stdout


def test_an_unknown_component_stops_the_run(tmp_path):
    r = _run(tmp_path, "postgress")
    assert r.returncode != 0 and "unknown components" in (r.stdout + r.stderr)
