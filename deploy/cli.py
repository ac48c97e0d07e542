"""`onenet`: the platform's command line (up, migrate, audit verify, residents import …)."""
from __future__ import annotations

import os
import sys

import typer

from deploy.services import WITH_DATABASE

app = typer.Typer(help="OneNet 社区一网通办平台 command line", no_args_is_help=True, add_completion=False)


def database_url_for(service: str) -> str:
    """The service's database: ONENET_<SERVICE>_DATABASE_URL, else the local SQLite file under var/."""
    env = os.environ.get(f"ONENET_{service.upper()}_DATABASE_URL")
    return env or f"sqlite+aiosqlite:///{os.environ.get('ONENET_VAR_DIR', 'var')}/{service}.db"


@app.command()
def migrate(service: str = typer.Argument(None, help="one service; all when omitted")) -> None:
    """Apply every service's migrations (each to its own database)."""
    from common.migrations import upgrade

    names = [service] if service else [s.name for s in WITH_DATABASE]
    for name in names:
        upgrade(name, database_url_for(name))
        typer.echo(f"{name}: migrations at head")


@app.command()
def makemigration(service: str, message: str) -> None:
    """Autogenerate a migration for SERVICE against a scratch SQLite database at head."""
    import tempfile

    from common.migrations import make_revision, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/scratch.db"
        upgrade(service, url)
        make_revision(service, url, message)


@app.command()
def up(host: str = "127.0.0.1", seed: bool = typer.Option(True, help="seed the demo district on first start"),
       base_port: int = typer.Option(8000, help="gateway port; services use the next five"),
       var_dir: str = typer.Option("var", help="where SQLite files and keys live")) -> None:
    """Start the whole platform: every service as its own process, migrations, keys, demo data."""
    from deploy.launcher import Launcher

    raise SystemExit(Launcher(host=host, var_dir=var_dir, seed=seed, base_port=base_port).run())


@app.command()
def serve(service: str = typer.Argument(..., help="gateway, svc_services, svc_residents, svc_matching, "
                                                   "svc_metrics or departments"),
          host: str = typer.Option("0.0.0.0", envvar="ONENET_HOST"),
          port: int = typer.Option(None, envvar="ONENET_PORT", help="defaults to the service's usual port"),
          workers: int = typer.Option(1, envvar="ONENET_WORKERS")) -> None:
    """Run one service in the foreground (what a container runs)."""
    import uvicorn

    from deploy.launcher import app_target
    from deploy.services import FORWARDED_ALLOW_IPS, by_name

    spec = by_name(service)
    os.environ.setdefault("ONENET_SERVICE_NAME", spec.name)
    uvicorn.run(app_target(spec), factory=True, host=host, port=port or spec.port, workers=workers, http=spec.http,
                access_log=False, log_level="warning", timeout_graceful_shutdown=10, proxy_headers=True,
                forwarded_allow_ips=FORWARDED_ALLOW_IPS)


@app.command()
def healthcheck(timeout: float = 2.0) -> None:
    """Exit 0 when this container's service answers /healthz (the image's HEALTHCHECK).

    The port is ONENET_PORT, else the usual port of the service PID 1 serves (`onenet serve NAME`), so an image
    started without ONENET_PORT still checks the right port."""
    import urllib.request

    from deploy.services import ALL

    port = os.environ.get("ONENET_PORT")
    if not port:
        try:
            with open("/proc/1/cmdline", "rb") as fh:
                args = fh.read().decode(errors="replace").split("\0")
        except OSError:
            args = []
        port = next((str(s.port) for s in ALL if s.name in args), "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as resp:
            ok = resp.status == 200
    except OSError:
        ok = False
    raise SystemExit(0 if ok else 1)


@app.command()
def bootstrap(var_dir: str = typer.Option("var", envvar="ONENET_VAR_DIR"),
              demo: bool = typer.Option(True, help="seed the demo district")) -> None:
    """Generate missing keys and service credentials, migrate every database, seed (what `up` does first)."""
    from deploy.launcher import Launcher

    Launcher(var_dir=var_dir, seed=demo).prepare()


def register_service_commands() -> None:
    """Each service may contribute commands (`onenet audit verify`, `onenet residents import` …) through a
    `register(app)` function in its own `cli` module."""
    from importlib import import_module

    for package in ("gateway", "svc_services", "svc_residents", "svc_matching", "svc_metrics"):
        try:
            module = import_module(f"{package}.cli")
        except ModuleNotFoundError as exc:
            if exc.name == f"{package}.cli":
                continue
            raise
        module.register(app)


def main() -> None:
    register_service_commands()
    app()


if __name__ == "__main__":
    main()
    sys.exit(0)
