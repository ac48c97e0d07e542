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
