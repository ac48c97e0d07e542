"""Benchmark: bulk import of N generated paper-ledger rows (纸质台账) into svc_residents on SQLite.

    .venv/bin/python -m bench.import_residents [--rows 100000] [--batch-size 1000] [--profile]

A fresh SQLite database migrated to head and seeded with the demo district (its grids), a generated CSV with
valid rows (GB 11643 ID numbers with real birth dates, mobiles, the demo grids, three persons per household,
one in three elderly), then `svc_residents.importer.import_file` exactly as `onenet residents import` runs it:
every row checked, ID number and phone encrypted with their blind indexes, households, persons, tags and outbox
events written in all-or-nothing batches. Prints rows/s for the import alone (target ≥ 2,000 rows/s).
No wall-clock assertion anywhere; this is never part of `make test`.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import tempfile
import time
from pathlib import Path

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"


def id_number(i: int) -> str:
    """The i-th of a family of distinct valid ID numbers (birth 1930-2019, every date real)."""
    year, day = 1930 + i % 90, i // 90
    month, dom = 1 + day % 12, 1 + (day // 12) % 28
    body = f"110105{year:04d}{month:02d}{dom:02d}{(day // 336) % 1000:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, WEIGHTS)) % 11]


def generate(path: Path, n: int, grids: list[str]) -> None:
    assert n <= 90 * 336 * 1000, "id_number() repeats beyond this"
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(["姓名", "身份证号", "手机号", "网格编码", "地址", "户籍类型", "与户主关系", "特殊群体"])
        for i in range(n):
            hh = i // 3
            w.writerow([SURNAMES[i % 20] + "某" + str(i), id_number(i), f"139{i:08d}", grids[hh % len(grids)],
                        f"测试路{hh}号", ("户籍", "常住", "流动人口")[i % 3], "户主" if i % 3 == 0 else "",
                        "老年人" if i % 90 < 30 else ""])


async def run(n: int, batch_size: int, profile: bool) -> float:
    from common.db import Database
    from common.migrations import upgrade
    from deploy import demo
    from svc_residents.importer import import_file
    from svc_residents.protection import load
    from svc_residents.seed import seed_demo

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await asyncio.to_thread(upgrade, "svc_residents", url)
        db = Database(url)
        keys = load(Path(tmp) / "fields.json")
        await seed_demo(db, keys)
        path = Path(tmp) / "ledger.csv"
        generate(path, n, [g["code"] for g in demo.GRIDS])
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t = time.perf_counter()
        r = await import_file(db, keys, path, batch_size=batch_size)
        elapsed = time.perf_counter() - t
        if prof is not None:
            import pstats

            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        await db.dispose()
    assert r.imported == n and not r.errors, (r.imported, r.errors[:5])
    rate = n / elapsed
    print(f"import: {n:,} rows in {elapsed:.1f} s = {rate:,.0f} rows/s "
          f"({r.households_created:,} households, SQLite, batch {batch_size})")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--profile", action="store_true", help="print the top of a cProfile of the import")
    args = ap.parse_args()
    asyncio.run(run(args.rows, args.batch_size, args.profile))


if __name__ == "__main__":
    main()
