"""Exact mean, median and p90 of an indicator's values without reading all of them.

A district's response times over a quarter are tens of thousands of values. The month rollup keeps, besides
the sums, a histogram of every indicator's values (dim "hist", logarithmic bins about 10 % wide, with the count
and the exact sum of each bin, at every place level). A rank is then found in the histogram, and only the values
of the bin it falls in are read from the observations to pick the exact one: the answer is the same as sorting
every value, at the cost of reading one or two bins.

Values of the partial months at a period's edges (a day, a week, the ends of a period that is not whole months)
come straight from the observations and are merged in, bin by bin.
"""
from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

BINS_PER_E = 10   # bin width e^(1/10) ≈ 10.5 %: some 200 bins cover one second to a year


def bin_of(value: float) -> int:
    return int(math.floor(BINS_PER_E * math.log1p(max(value, 0.0))))


def bin_bounds(b: int) -> tuple[float, float]:
    """[low, high) of bin b, widened by a hair: the caller re-bins what it reads, so rounding never loses a
    value at an edge."""
    lo, hi = math.expm1(b / BINS_PER_E), math.expm1((b + 1) / BINS_PER_E)
    return lo * (1 - 1e-9) - 1e-9, hi * (1 + 1e-9) + 1e-9


def _inner(b: int) -> tuple[float, float]:
    """A range certainly inside bin b (its bounds moved in by far more than any rounding)."""
    lo, hi = math.expm1(b / BINS_PER_E), math.expm1((b + 1) / BINS_PER_E)
    return lo * (1 + 1e-9) + 1e-9, hi * (1 - 1e-9) - 1e-9


FetchBins = Callable[[list[int]], Awaitable[list[float]]]


@dataclass
class Distribution:
    """The multiset of one indicator's values: `hist` {bin: [count, Σ millionths]} for the whole months (values
    read on demand through `fetch`), `edges` as (value, count) pairs."""

    hist: dict[int, list[int]] = field(default_factory=dict)
    edges: list[tuple[float, int]] = field(default_factory=list)
    fetch: FetchBins | None = None

    def __post_init__(self) -> None:
        self.hist = {b: v for b, v in self.hist.items() if v[0] > 0}
        self.edge_bins: dict[int, list[tuple[float, int]]] = {}
        for v, c in self.edges:
            self.edge_bins.setdefault(bin_of(v), []).append((v, c))
        self.n = sum(v[0] for v in self.hist.values()) + sum(c for _, c in self.edges)
        self._bins = sorted(set(self.hist) | set(self.edge_bins))
        self._exact: dict[int, list[float]] = {}

    def mean(self, div: float) -> float:
        """Σ of the months (exact integer millionths) plus Σ of the edges, over n; in the unit `div`."""
        months = sum(v[1] for v in self.hist.values()) / 1_000_000
        return (months + math.fsum(v * c for v, c in self.edges)) / self.n / div

    async def _load(self, bins: set[int]) -> None:
        want = sorted(b for b in bins if b not in self._exact)
        fetched: dict[int, list[float]] = {b: [] for b in want}
        if want and self.fetch is not None and any(b in self.hist for b in want):
            # Values well inside a bin are placed by comparison; only those within a hair of an edge (where
            # floating point could go either way) go through bin_of, the definition.
            inner = [(b, *_inner(b)) for b in want]
            for v in await self.fetch([b for b in want if b in self.hist]):
                for b, lo, hi in inner:
                    if lo <= v <= hi:
                        fetched[b].append(v)
                        break
                else:
                    b = bin_of(v)
                    if b in fetched:
                        fetched[b].append(v)
        for b in want:
            got = fetched[b]
            if len(got) != self.hist.get(b, [0])[0]:
                raise Stale(f"bin {b}: histogram says {self.hist.get(b, [0])[0]}, observations {len(got)}")
            got.extend(v for v, c in self.edge_bins.get(b, []) for _ in range(c))
            got.sort()
            self._exact[b] = got

    def _locate(self, i: int) -> tuple[int, int]:
        """(bin, rank within the bin) of the i-th smallest value."""
        seen = 0
        for b in self._bins:
            count = self.hist.get(b, [0])[0] + sum(c for _, c in self.edge_bins.get(b, []))
            if i < seen + count:
                return b, i - seen
            seen += count
        raise IndexError(i)

    async def quantiles(self, ps: list[float], div: float) -> list[float]:
        """Linear interpolation between closest ranks (numpy's default), in the unit `div`."""
        wanted = []
        for p in ps:
            k = (self.n - 1) * p
            wanted.append((k, math.floor(k), math.ceil(k)))
        spots = {i: self._locate(i) for _, lo, hi in wanted for i in (lo, hi)}
        await self._load({b for b, _ in spots.values()})
        out = []
        for k, lo, hi in wanted:
            a = self._exact[spots[lo][0]][spots[lo][1]] / div
            b = self._exact[spots[hi][0]][spots[hi][1]] / div
            out.append(a + (b - a) * (k - lo))
        return out

    async def count_at_most(self, limit: float) -> int:
        """How many values are ≤ limit (the share within an indicator's threshold)."""
        cut = bin_of(limit)
        below = sum(v[0] for b, v in self.hist.items() if b < cut)
        below += sum(c for b, vs in self.edge_bins.items() if b < cut for _, c in vs)
        if cut in self.hist or cut in self.edge_bins:
            await self._load({cut})
            below += sum(1 for v in self._exact[cut] if v <= limit)
        return below


class Stale(Exception):
    """The histogram and the observations disagree (an ingest committed between the two reads)."""
