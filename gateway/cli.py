"""`onenet audit …` and `onenet edge`; deploy.cli calls `register(app)`."""
from __future__ import annotations

import asyncio

import typer

audit = typer.Typer(help="交换日志 message log (全程留痕)", no_args_is_help=True)


async def _verify(url: str):
    from common.db import Database
    from gateway.exchange.audit import verify_chain
    from gateway.exchange.models import MessageLog

    db = Database(url)
    try:
        return await verify_chain(db, MessageLog)
    finally:
        await db.dispose()


@audit.command("verify")
def verify(database_url: str = typer.Option(None, "--database-url",
                                            help="网关数据库；默认 ONENET_GATEWAY_DATABASE_URL 或本地 var/gateway.db")
           ) -> None:
    """逐条核对交换日志哈希链，指出第一条被篡改的记录。Walk the hash chain; name the first tampered record."""
    if not database_url:
        from deploy.cli import database_url_for

        database_url = database_url_for("gateway")
    r = asyncio.run(_verify(database_url))
    if r.ok:
        typer.echo(f"哈希链完整 chain intact: {r.count} 条记录 records, 末条哈希 tail hash {r.tail_hash}")
        return
    typer.echo(f"哈希链被破坏 chain broken at record seq={r.first_bad_seq} id={r.first_bad_id}: {r.reason} "
               f"（此前 {r.count} 条完好 {r.count} records before it are intact）", err=True)
    raise typer.Exit(1)


def edge(listen: str = typer.Option("0.0.0.0:8000", envvar="ONENET_EDGE_LISTEN", help="where callers reach it"),
         gateway: str = typer.Option("http://127.0.0.1:8006", envvar="ONENET_EDGE_GATEWAY_URL",
                                     help="the Python gateway behind it"),
         control_port: int = typer.Option(8007, envvar="ONENET_EDGE_CONTROL_PORT",
                                          help="loopback port the gateway pushes its state to"),
         prefix: str = typer.Option("/tmp/onenet-edge", envvar="ONENET_EDGE_PREFIX",
                                    help="nginx's configuration, pid, temporary files and error log"),
         workers: int = typer.Option(1, envvar="ONENET_EDGE_WORKERS"),
         access_log: str = typer.Option("/dev/stdout", envvar="ONENET_EDGE_ACCESS_LOG",
                                        help="nginx's JSON access lines (empty: none)")) -> None:
    """网关边缘节点 the gateway's edge (nginx + Lua, docs/adr/0012) in the foreground, configured from the
    gateway's own settings (ONENET_*, ONENET_EDGE_SECRET); SIGTERM stops it gracefully (its last message-log
    records handed to the gateway). What a container beside the gateway runs (deploy/k8s)."""
    import signal
    from pathlib import Path

    from gateway.edge.config import EdgeProcess
    from gateway.settings import GatewaySettings

    settings = GatewaySettings()
    if not settings.edge_secret:
        raise typer.BadParameter("ONENET_EDGE_SECRET is not set (the gateway's and its edge's shared secret)")
    process = EdgeProcess(settings, listen=listen, control_port=control_port, gateway=gateway,
                          secret=settings.edge_secret, prefix=Path(prefix), workers=workers,
                          access_log=access_log or None)
    proc = process.start()

    def stop(signum, frame) -> None:  # nginx's graceful stop is QUIT; TERM would drop the records it holds
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    raise typer.Exit(proc.wait())


def totp(username: str = typer.Argument("ops1", help="演示账号 a demo user with an authenticator"),
         secret: str = typer.Option(None, help="或：绑定时得到的密钥 or the secret an enrolment gave"),
         step: int = typer.Option(0, help="1: 下一个时间步的验证码 the next step's code (each code works once)")) -> None:
    """演示动态验证码 the current TOTP code of a demo account's authenticator (ops1 signs in with it: -d otp=…),
    or of any secret: a command-line authenticator for local runs."""
    import pyotp

    from common.clock import Clock
    from gateway.accounts.seed import demo_code

    now = Clock().now()
    code = pyotp.TOTP(secret).at(now, counter_offset=step) if secret else demo_code(username, now, step)
    if code is None:
        raise typer.BadParameter(f"{username} has no demo authenticator")
    typer.echo(code)


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")
    app.command("totp")(totp)
    app.command("edge")(edge)
