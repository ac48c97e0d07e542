"""The launcher's promises that need no running platform: a taken port is named and nothing starts; a child that
dies is restarted with a backoff that doubles up to 30 s and resets once the child has run stably."""
from __future__ import annotations

import socket
import subprocess
import sys

from deploy.launcher import MAX_BACKOFF, STABLE_AFTER, Child, Launcher
from deploy.services import GATEWAY


def test_a_taken_port_is_named_and_nothing_starts(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        launcher = Launcher(var_dir=tmp_path, base_port=taken, quiet=True)
        assert launcher.start() is False
    err = capsys.readouterr().err
    assert f"127.0.0.1:{taken}" in err and "已被占用" in err and "gateway" in err
    assert launcher.children == [] and not (tmp_path / "gateway.db").exists()


def test_a_dead_child_is_restarted_with_doubling_backoff(tmp_path, monkeypatch):
    launcher = Launcher(var_dir=tmp_path, quiet=True)
    spawned: list[float] = []
    clock = [1000.0]
    monkeypatch.setattr("deploy.launcher.time.monotonic", lambda: clock[0])

    def fake_spawn(child: Child) -> None:  # a process that exits at once
        child.proc = subprocess.Popen([sys.executable, "-c", "pass"])
        child.proc.wait()
        child.started_at = clock[0]
        child.restart_at = None
        spawned.append(clock[0])

    monkeypatch.setattr(launcher, "spawn", fake_spawn)
    child = Child(spec=GATEWAY, port=1)
    launcher.children.append(child)
    launcher.spawn(child)
    delays = []
    for _ in range(7):
        launcher.supervise()                      # notices the exit, schedules the restart
        delays.append(child.restart_at - clock[0])
        clock[0] = child.restart_at               # time passes to the restart
        launcher.supervise()                      # restarts it
    assert delays == [1, 2, 4, 8, 16, 30, 30] and child.restarts == 7 and delays[-1] == MAX_BACKOFF
    # a child that ran stably before dying starts again from 1 s
    clock[0] += STABLE_AFTER + 1
    launcher.supervise()
    assert child.restart_at - clock[0] == 1


def test_the_edge_gets_the_launchers_environment(tmp_path, monkeypatch):
    """nginx is started with the environment every other child gets (not an empty one): what sets a process's
    clock (TZ, libfaketime's LD_PRELOAD and FAKETIME in the shifted-date runs) must reach it, or the edge stamps
    its gateway assertions on another time than the services check them against."""
    from gateway.edge.config import find_runtime

    from tests.components import missing

    runtime = find_runtime()
    if isinstance(runtime, str):
        missing("edge", runtime)
    monkeypatch.setenv("FAKETIME", "+0s")
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    launcher = Launcher(var_dir=tmp_path, quiet=True, edge=True)
    launcher.prepare()
    launcher.edge_secret = "s" * 32  # what start() draws before spawning
    gateway_env = launcher.child_env(GATEWAY, {})
    edge = launcher.edge_child(gateway_env)
    assert edge.env.get("FAKETIME") == "+0s" and edge.env.get("TZ") == "Asia/Shanghai"
    conf = (tmp_path / "edge" / "nginx.conf").read_text()
    assert "env FAKETIME;" in conf and "env TZ;" in conf  # and nginx keeps them for its workers
