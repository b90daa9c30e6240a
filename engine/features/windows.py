"""Windowed operators: each reads the last N rows of the symbol's own history, t included.

``N`` is a whole number of rows (> 0). A value is null until the window is full (row
N - 1 of the symbol, counting from 0, plus the input's own leading nulls) and null when
any value inside the window is null; ``Count`` excepted. Semantics follow Qlib's
``qlib/data/ops.py`` on full windows; docs/features.md lists every difference.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

from engine.features.operators import (
    STD_ZERO,
    Add,
    And,
    Div,
    Gt,
    Mul,
    Node,
    Number,
    Power,
    Sub,
    Where,
)


@dataclass(frozen=True)
class Ref(Node):
    """x n rows earlier (n > 0); n < 0 reads -n rows later (labels only)."""

    x: Node
    n: int

    @property
    def lead(self) -> int:
        return self.x.lead + max(self.n, 0)

    @property
    def future(self) -> int:
        return self.x.future + max(-self.n, 0)


@dataclass(frozen=True)
class Rolling(Node):
    """A statistic of x over the last n rows."""

    x: Node
    n: int
    min_window: ClassVar[int] = 1

    @property
    def lead(self) -> int:
        return self.x.lead + self.n - 1


class Mean(Rolling):
    """Arithmetic mean."""


class Sum(Rolling):
    """Sum."""


class Std(Rolling):
    """Sample standard deviation (ddof=1)."""

    min_window = 2


class Var(Rolling):
    """Sample variance (ddof=1)."""

    min_window = 2


class Skew(Rolling):
    """Sample skewness, bias-corrected (pandas' ``rolling().skew()``); null on a
    constant window."""

    min_window = 3
    holes = True


class Kurt(Rolling):
    """Sample excess kurtosis, bias-corrected (pandas' ``rolling().kurt()``); null on a
    constant window."""

    min_window = 4
    holes = True


class Max(Rolling):
    """Largest value."""


class Min(Rolling):
    """Smallest value."""


class Mad(Rolling):
    """Mean absolute deviation around the window's mean (not the median's)."""


class Rank(Rolling):
    """Percentile of x_t among the window's values: its average rank (ties share the
    mean of their ranks, 1 = smallest) divided by n; in (0, 1], 1 for the window's max.

    Over 2..RANK_SIGNS rows it expands to (n + 1 + s) / 2n, s the sum over k = 1..n-1 of
    sign(x_t - x_{t-k}) (the rows below x_t count +1, those above -1, ties 0), in blocks of
    ``SIGN_BLOCK`` lags at fixed places, so that the ranks of one x over several windows
    share their blocks (Alpha158's five windows: 59 lags in all, not 120)."""

    def expand(self) -> Node:
        x, n = self.x.expand(), self.n
        if not 2 <= n <= RANK_SIGNS:
            return Rank(x, n)
        edges = [1, *range(SIGN_BLOCK, n, SIGN_BLOCK), n]
        total: Node = Number(float(n + 1))
        for lo, hi in itertools.pairwise(edges):
            total = Add(total, SignSum(x, lo, hi - 1))
        return Div(total, Number(float(2 * n)))


RANK_SIGNS = 64  # Rank over up to this many rows from signs of lagged differences
SIGN_BLOCK = 5  # lags per SignSum block: blocks start at lags 1, 5, 10, 15...


@dataclass(frozen=True)
class SignSum(Node):
    """(internal) the sum over k = lo..hi of sign(x_t - x_{t-k}): null when x_t or one of
    x_{t-lo} .. x_{t-hi} is null or before the symbol's first row."""

    x: Node
    lo: int
    hi: int

    @property
    def lead(self) -> int:
        return self.x.lead + self.hi


class IdxMax(Rolling):
    """Position of the window's max, 1 = oldest row, n = today; the oldest on ties."""

    def expand(self) -> Node:
        return ArgMax(Order(self.x.expand(), False), self.n)


class IdxMin(Rolling):
    """Position of the window's min, 1 = oldest row, n = today; the oldest on ties."""

    def expand(self) -> Node:
        return ArgMax(Order(self.x.expand(), True), self.n)


@dataclass(frozen=True)
class Order(Node):
    """(internal) a stand-in for x with x's order (reversed if ``descending``): only ever
    compared with values of the same column, inside a window (Polars: dense ranks)."""

    x: Node
    descending: bool


class ArgMax(Rolling):
    """(internal) position of the window's largest value, 1 = oldest; the oldest on ties."""


class Count(Rolling):
    """Number of non-null values among the last n rows (null before row n - 1)."""

    holes = False

    @property
    def lead(self) -> int:
        return self.n - 1


class EMA(Rolling):
    """Exponential moving average with span n (alpha = 2 / (n + 1)), pandas'
    ``ewm(span=n, adjust=True)`` over the symbol's whole history: weights (1 - alpha)^k
    by row age k, null rows weigh nothing. Null where x_t is null or fewer than n values
    of x have been seen."""


@dataclass(frozen=True)
class Quantile(Rolling):
    """The q-quantile, linear interpolation between order statistics (pandas' default)."""

    q: float = 0.5


class Med(Rolling):
    """Median: Quantile(x, n, 0.5)."""

    def expand(self) -> Node:
        return Quantile(self.x.expand(), self.n, 0.5)


class TimeCov(Rolling):
    """(internal) sum over the window of (k - (n + 1) / 2) * x_k, k = 1 (oldest) .. n: the
    co-moment of x with time, from which the regressions on time follow."""


def _time_parts(node: Rolling) -> tuple[Node, Node, float]:
    """(x, its TimeCov, sum of (k - mean k)^2 over k = 1..n)."""
    x, n = node.x.expand(), node.n
    return x, TimeCov(x, n), n * (n * n - 1) / 12


class Slope(Rolling):
    """Least-squares slope of x on time (1 row = 1 unit) over the window."""

    min_window = 2

    def expand(self) -> Node:
        _, cov, stt = _time_parts(self)
        return Div(cov, Number(stt))


class Resi(Rolling):
    """Residual of today's x from the least-squares line of x on time over the window."""

    min_window = 2

    def expand(self) -> Node:
        x, cov, stt = _time_parts(self)
        mean = Div(Sum(x, self.n), Number(self.n))
        return Sub(Sub(x, mean), Mul(Div(cov, Number(stt)), Number((self.n - 1) / 2)))


class Rsquare(Rolling):
    """R^2 of the least-squares line of x on time; null where Std(x, n) <= 2e-5 (Qlib)."""

    min_window = 2

    def expand(self) -> Node:
        x, cov, stt = _time_parts(self)
        std = Std(x, self.n)
        r2 = Div(Power(cov, Number(2.0)), Mul(Mul(std, std), Number(stt * (self.n - 1))))
        return Where(Gt(std, Number(STD_ZERO)), r2)


class WMA(Rolling):
    """Linearly weighted mean: weights 1 (oldest) .. n (today), divided by their sum."""

    def expand(self) -> Node:
        x, cov, _ = _time_parts(self)
        n = self.n
        weighted = Add(cov, Mul(Sum(x, n), Number((n + 1) / 2)))
        return Div(weighted, Number(n * (n + 1) / 2))


class Delta(Rolling):
    """x_t - x_{t-n}."""

    def expand(self) -> Node:
        x = self.x.expand()
        return Sub(x, Ref(x, self.n))


@dataclass(frozen=True)
class PairRolling(Node):
    """A statistic of the pairs (a, b) over the last n rows."""

    a: Node
    b: Node
    n: int
    min_window: ClassVar[int] = 2

    @property
    def lead(self) -> int:
        return max(self.a.lead, self.b.lead) + self.n - 1


class Cov(PairRolling):
    """Sample covariance (ddof=1)."""


class Corr(PairRolling):
    """Pearson correlation; null where either input's Std over the window <= 2e-5 (Qlib)."""

    def expand(self) -> Node:
        a, b, n = self.a.expand(), self.b.expand(), self.n
        sa, sb = Std(a, n), Std(b, n)
        varies = And(Gt(sa, Number(STD_ZERO)), Gt(sb, Number(STD_ZERO)))
        return Where(varies, Div(Cov(a, b, n), Mul(sa, sb)))


WINDOWED = (Ref, SignSum, Rolling, PairRolling)
