"""The command line: start the targets for each worker count, measure them in turns, stop them, print."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import bench.gateway
from bench.gateway.backend import PATH
from bench.gateway.load import Turns, find_wrk, write_script
from bench.gateway.report import count_log, print_profile, print_table
from bench.gateway.rig import ROOT, Rig


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=bench.gateway.__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4,
                    help="turns each target takes at --connections, alternating with the others (default 4)")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated gateway uvicorn worker counts to measure; nginx gets as many worker "
                         "processes, measured next to it (default 1,2)")
    ap.add_argument("--masked", action="store_true", help="grant part of the fields: every response is masked")
    ap.add_argument("--quiet-logs", action="store_true",
                    help="no access logs: nginx with access_log off, the gateway at log level WARNING; by default "
                         "both log each call as deployed (nginx its combined line, the gateway its JSON line, "
                         "each to a file here)")
    ap.add_argument("--edge", choices=("both", "on", "off"), default="both",
                    help="the gateway with its edge (nginx + Lua in front, ADR 0012; as deployed when the packages "
                         "are installed), without it (the Python gateway alone), or both (default)")
    ap.add_argument("--baseline", metavar="DIR", type=Path,
                    help="another source tree (e.g. `git archive` of an earlier commit): its gateway, with the "
                         "edge, is measured in the same turns as this one's (before/after in one run)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("--profile", metavar="FILE", help="record the gateway with py-spy during its first "
                                                   "16-connection run (collapsed stacks to FILE; prints the top frames)")
    ap.add_argument("--hold", action="store_true", help="start everything, print the URLs and token, and wait "
                                                        "for Ctrl-C instead of measuring (for profiling by hand)")
    return ap.parse_args(argv)


def hold(rig: Rig, workers: int, edge: bool) -> int:
    """Everything started, its addresses and token printed, until Ctrl-C or SIGTERM."""
    ngx_url = rig.start_nginx(workers)
    gw, gw_url, _ = rig.start_gateway(workers, edge=edge)
    auth = rig.admit(gw_url)
    print(json.dumps({"backend": f"http://127.0.0.1:{rig.backend_port}", "gateway": gw_url, "gateway_pid": gw.pid,
                      "nginx": ngx_url, "path": PATH, **auth}), flush=True)

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # clean up on kill too, and on Ctrl-C even when backgrounded
    signal.signal(signal.SIGINT, stop)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    from gateway.edge.config import find_runtime

    runtime = find_runtime()
    if isinstance(runtime, str) and args.edge != "off":
        if args.edge == "on":
            print(f"the edge cannot run here: {runtime}", file=sys.stderr)
            return 2
        print(f"(the edge is not measured: {runtime})")
        args.edge = "off"
    edge_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.edge]

    wrk = find_wrk()
    rig = Rig(quiet_logs=args.quiet_logs, masked=args.masked)
    try:
        rig.start_backend()
        if args.hold:
            return hold(rig, worker_counts[0], args.edge != "off")
        turns = Turns(wrk, connections=args.connections, rounds=args.rounds, duration=args.duration,
                      profile=args.profile)
        logged: dict[str, int] = {}
        plain = write_script(rig.tmp / "plain.lua", {})
        backend_url = f"http://127.0.0.1:{rig.backend_port}{PATH}"
        turns.warm_up("backend (direct)", backend_url, plain)
        turns.measure_many([("backend (direct)", backend_url, plain, None)])
        for w in worker_counts:
            # nginx with w workers and the gateway with w workers (without and with its edge), all started, then
            # measured in turns; idle, a proxy costs the others nothing
            ngx_url = rig.start_nginx(w)
            targets = [(f"nginx ×{w}", f"{ngx_url}{PATH}", plain, None)]
            gateways = []
            runs = [(edge, ROOT) for edge in edge_modes]
            if args.baseline:  # the earlier tree's gateway beside this one's (its edge from this tree's config)
                runs += [(edge, args.baseline.resolve()) for edge in edge_modes]
            for edge, tree in runs:
                label = f"gateway{'+edge' if edge else ''}{' (baseline)' if tree != ROOT else ''} ×{w}"
                gw, gw_url, db_url = rig.start_gateway(w, edge=edge, tree=tree)
                auth = rig.admit(gw_url)
                script = write_script(rig.tmp / f"token-{w}-{int(edge)}-{int(tree != ROOT)}.lua",
                                      {**auth, "X-OneNet-Purpose": "benchmark"})
                targets.append((label, f"{gw_url}{PATH}", script, gw.pid))
                gateways.append((label, gw, db_url))
            for name, url, script, _ in targets:
                turns.warm_up(name, url, script)
            turns.measure_many(targets)
            for label, gw, db_url in gateways:
                rig.stop_gateway(gw)
                logged[label] = count_log(db_url)
            rig.stop_nginx(w)

        print_table(turns.results, args, worker_counts, logged, turns.warmed)
        if args.profile:
            print_profile(Path(args.profile))
        if args.json:
            print(json.dumps({k: {"rps": v[0].rps, "p50_1c_ms": v[1].p50_ms} for k, v in turns.results.items()},
                             ensure_ascii=False))
        return 0
    finally:
        rig.close()
