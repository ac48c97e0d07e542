"""Order statistics from a histogram plus the values of one bin equal those of sorting every value."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from svc_metrics.kpis.distribution import Distribution, Stale, bin_bounds, bin_of


def split(values: list[float], share: float, rnd: random.Random) -> tuple[dict, list, list]:
    months, edges = [], []
    for v in values:
        (months if rnd.random() < share else edges).append(v)
    hist: dict[int, list[int]] = {}
    for v in months:
        h = hist.setdefault(bin_of(v), [0, 0])
        h[0] += 1
        h[1] += round(v * 1_000_000)
    return hist, months, [(v, 1) for v in edges]


@pytest.mark.parametrize("seed", range(12))
async def test_quantiles_and_threshold_are_exact(seed):
    rnd = random.Random(seed)
    n = rnd.choice([1, 2, 3, 10, 200, 3000])
    pool = [rnd.choice([0.0, 60.0, 3600.0]) for _ in range(5)]
    values = [rnd.choice(pool) if rnd.random() < 0.2 else rnd.lognormvariate(9, 1.5) for _ in range(n)]
    values += [math.expm1(b / 10) for b in range(40, 45)]   # exactly on bin edges
    hist, months, edges = split(values, rnd.choice([0.0, 0.5, 1.0]), rnd)
    reads: list[list[int]] = []

    async def fetch(bins: list[int]) -> list[float]:
        reads.append(bins)
        return [v for v in months if any(bin_bounds(b)[0] <= v < bin_bounds(b)[1] for b in bins)]

    d = Distribution(hist, edges, fetch)
    assert d.n == len(values)
    median, p90 = await d.quantiles([0.5, 0.9], 3600.0)
    expect = np.percentile(np.array(values) / 3600.0, [50, 90])
    assert median == pytest.approx(expect[0], rel=1e-12, abs=1e-12)
    assert p90 == pytest.approx(expect[1], rel=1e-12, abs=1e-12)
    # the months' sum is kept in whole microseconds
    assert d.mean(3600.0) == pytest.approx(sum(values) / len(values) / 3600.0, abs=1e-6 / 3600)
    limit = rnd.choice(values)
    assert await d.count_at_most(limit) == sum(1 for v in values if v <= limit)
    assert sum(len(b) for b in reads) <= 4 + 1   # a few bins, never everything


async def test_a_histogram_that_disagrees_with_the_observations_is_reported():
    async def fetch(bins: list[int]) -> list[float]:
        return []

    d = Distribution({bin_of(100.0): [1, 100_000_000]}, [], fetch)
    with pytest.raises(Stale):
        await d.quantiles([0.5], 1.0)
