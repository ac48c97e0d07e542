"""What a run prints: the table of targets, each gateway's ratios against nginx and the bare backend with the
goals, the message log's row count, and py-spy's top frames."""
from __future__ import annotations

from pathlib import Path

from bench.gateway.backend import PATH
from bench.gateway.load import Load


def print_profile(path: Path, top: int = 25) -> None:
    """Self and inclusive sample counts per frame from py-spy's collapsed stacks."""
    from collections import Counter

    own, incl, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    print(f"\npy-spy: {total} samples; top frames by own time")
    for f, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("top frames by inclusive time")
    for f, n in incl.most_common(top + 15):
        print(f"  {100 * n / total:5.1f}%  {f}")


def count_log(db_url: str) -> int:
    import sqlite3

    with sqlite3.connect(db_url.split("///", 1)[1]) as conn:
        return conn.execute("SELECT count(*) FROM exchange_message_log").fetchone()[0]


def print_table(results: dict[str, tuple[Load, Load]], args, worker_counts: list[int], logged: dict[str, int],
                warmed: dict[str, int]) -> None:
    c = args.connections
    print(f"\nGateway vs nginx, same backend ({PATH}), {args.duration:g} s per run, wrk; "
          f"{'no access logs' if args.quiet_logs else 'access logs on (nginx: combined format to a file; gateway: INFO, JSON lines)'}"
          f"{', masked responses' if args.masked else ''}")
    print(f"{'target':<28} {'req/s @' + str(c) + 'c':>12} {'p50 @' + str(c) + 'c':>10} {'p99 @' + str(c) + 'c':>10}"
          f" {'p50 @1c':>9} {'p99 @1c':>9} {'non-2xx':>8} {'errors':>7}")
    for name, (many, one) in results.items():
        print(f"{name:<28} {many.rps:>12,.0f} {many.p50_ms:>8.2f}ms {many.p99_ms:>8.2f}ms {one.p50_ms:>7.3f}ms"
              f" {one.p99_ms:>7.3f}ms {many.non2xx + one.non2xx:>8} {many.errors + one.errors:>7}")
    direct = results["backend (direct)"]
    for w in worker_counts:
        ng = results[f"nginx ×{w}"]
        for label in (f"gateway ×{w}", f"gateway+edge ×{w}", f"gateway (baseline) ×{w}",
                      f"gateway+edge (baseline) ×{w}"):
            if label not in results:
                continue
            gw = results[label]
            ratio = gw[0].rps / ng[0].rps if ng[0].rps else 0.0
            added = gw[1].p50_ms - ng[1].p50_ms
            print(f"\n{label}: throughput / nginx ×{w} @{c}c: {ratio:.2f}  "
                  f"(goal ≥ 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
            print(f"  median latency @1c, gateway − nginx: {added:+.3f} ms  (goal ≤ 0.5 ms: "
                  f"{'met' if added <= 0.5 else 'NOT met'}); gateway − direct backend: "
                  f"{gw[1].p50_ms - direct[1].p50_ms:+.3f} ms")
            calls = gw[0].requests + gw[1].requests
            print(f"  message log rows written: {logged.get(label, 0)} (measured calls {calls}, warm-up "
                  f"{warmed.get(label, 0)}, plus the set-up's own calls)")
