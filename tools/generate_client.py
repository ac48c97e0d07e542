"""A typed Python client of the platform, generated from the gateway's `/openapi.json` by openapi-python-client.

The generator runs from its own venv, `.venv-tools` (`make client-tools`, pinned in tools/client-requirements.txt):
it pins httpx < 0.29 and a typer the project's venv cannot share. What it writes needs only httpx and attrs,
which the project's venv has, so the client is imported there (tests/test_generated_client.py drives the
README's tour through it).

    .venv/bin/python -m tools.generate_client --url http://127.0.0.1:8000 --out build/client   # `make client`
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
GENERATOR = TOOLS_BIN / "openapi-python-client"
PACKAGE = "onenet_client"


def generate(doc: dict[str, Any], out: Path) -> Path:
    """Write the client package for `doc` to `out/onenet_client` (replacing an older one); its path.
    Raises RuntimeError with the generator's output when it fails or drops part of the document."""
    if not GENERATOR.exists():
        raise FileNotFoundError(f"{GENERATOR} is missing: run `make client-tools`")
    out.mkdir(parents=True, exist_ok=True)
    target = out / PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "openapi.json"
        spec.write_text(json.dumps(doc, ensure_ascii=False))
        # no post-hooks: formatting thousands of generated files with ruff is most of the generator's time, and
        # nothing reads them but Python
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"post_hooks": []}))
        run = subprocess.run([str(GENERATOR), "generate", "--path", str(spec), "--output-path", str(target),
                              "--meta", "none", "--overwrite", "--config", str(config)],
                             capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    # a schema the generator cannot read is dropped with a warning and the run still exits 0: a client missing
    # part of the contract is a failure here
    if run.returncode != 0 or "Unable to" in log or not (target / "client.py").exists():
        raise RuntimeError(f"openapi-python-client failed (exit {run.returncode}):\n{log[-6000:]}")
    return target


def main(argv: list[str] | None = None) -> int:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway whose /openapi.json to read")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "client")
    args = ap.parse_args(argv)
    doc = httpx.get(f"{args.url.rstrip('/')}/openapi.json", timeout=30).raise_for_status().json()
    if doc.get("info", {}).get("x-onenet-unavailable"):
        print(f"services missing from the document: {doc['info']['x-onenet-unavailable']}", file=sys.stderr)
        return 1
    print(generate(doc, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
