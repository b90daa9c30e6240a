"""Factor trees to lazy Polars expressions over a panel sorted by (symbol, date).

Windows roll over the whole contiguous column (one pass per operator, not one per
symbol) and a mask on ``_row``, the row's position inside its symbol, nulls every row
whose window would reach into the previous symbol: the same speed note as
``engine.features`` (the hand-written features). Rolling statistics need all n values
(``min_samples=n``); the few rolling forms that skip nulls get an explicit null count.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from engine.features import operators as op
from engine.features import windows as win
from engine.features.plan import Plan

ROW = "_row"  # 0-based row number inside the symbol's history
ROWS_LEFT = "_rows_left"  # rows after this one inside the symbol's history
POSITION = "_pos"  # 0-based row number in the whole panel (the index of rolling contexts)
SYMBOL = "symbol"
Ref = Callable[[op.Node], pl.Expr]


def field_column(name: str) -> str:
    return f"_f_{name}"


def compile_level(plan: Plan, level: int) -> list[pl.Expr]:
    """The expressions computing the columns of ``plan.levels[level]``."""

    def ref(node: op.Node) -> pl.Expr:
        if isinstance(node, op.Field):
            return pl.col(field_column(node.name))
        if isinstance(node, op.Number):
            return pl.lit(node.value, dtype=pl.Float64)
        if node in plan.columns and node not in current:
            return pl.col(plan.columns[node])
        return compile_node(node, ref)

    exprs = []
    for name, node in plan.levels[level]:
        current = {node}
        exprs.append(compile_node(node, ref).alias(name))
    return exprs


def compile_node(node: op.Node, ref: Ref) -> pl.Expr:
    """``node`` as a Polars expression; ``ref`` compiles (or names) its children."""
    if isinstance(node, op.Field | op.Number):
        return ref(node)
    for kinds, build in _RULES:
        if isinstance(node, kinds):
            expr = build(node, ref)
            return expr.cast(pl.Float64) if isinstance(node, _NOT_FLOAT) else expr
    raise TypeError(f"no Polars form for {type(node).__name__}")


# --- element-wise -----------------------------------------------------------------------
def _truthy(e: pl.Expr) -> pl.Expr:
    return e != 0


def _power(node: op.Power, ref: Ref) -> pl.Expr:
    a, b = ref(node.a), ref(node.b)
    guard = node.guard()
    if guard == "any":
        ok = (a > 0) | ((a == 0) & (b >= 0)) | ((a < 0) & (b == b.round()))
        return pl.when(ok).then(a.pow(b))
    base = {None: a, "!= 0": pl.when(a != 0).then(a), ">= 0": pl.when(a >= 0).then(a),
            "> 0": pl.when(a > 0).then(a)}[guard]  # fmt: skip
    return base.pow(node.b.value)


def _divide(node: op.Div, ref: Ref) -> pl.Expr:
    b = ref(node.b)
    return ref(node.a) / (b if op._nonzero(node.b) else pl.when(b != 0).then(b))


_ELEMENTWISE: dict[type, Callable[..., pl.Expr]] = {
    op.Neg: lambda n, r: -r(n.x),
    op.Abs: lambda n, r: r(n.x).abs(),
    op.Sign: lambda n, r: r(n.x).sign(),
    op.Log: lambda n, r: pl.when(r(n.x) > 0).then(r(n.x)).log(),
    op.Add: lambda n, r: r(n.a) + r(n.b),
    op.Sub: lambda n, r: r(n.a) - r(n.b),
    op.Mul: lambda n, r: r(n.a) * r(n.b),
    op.Div: _divide,
    op.Power: _power,
    op.Less: lambda n, r: pl.when(r(n.a) <= r(n.b)).then(r(n.a)).when(r(n.a) > r(n.b)).then(r(n.b)),
    op.Greater: lambda n, r: pl.when(r(n.a) >= r(n.b)).then(r(n.a)).when(r(n.a) < r(n.b)).then(r(n.b)),
    op.Gt: lambda n, r: r(n.a) > r(n.b),
    op.Ge: lambda n, r: r(n.a) >= r(n.b),
    op.Lt: lambda n, r: r(n.a) < r(n.b),
    op.Le: lambda n, r: r(n.a) <= r(n.b),
    op.Eq: lambda n, r: r(n.a) == r(n.b),
    op.Ne: lambda n, r: r(n.a) != r(n.b),
    op.And: lambda n, r: _truthy(r(n.a)) & _truthy(r(n.b)),
    op.Or: lambda n, r: _truthy(r(n.a)) | _truthy(r(n.b)),
    op.If: lambda n, r: pl.when(r(n.cond) != 0).then(r(n.a)).when(r(n.cond) == 0).then(r(n.b)),
    op.Where: lambda n, r: pl.when(r(n.cond) != 0).then(r(n.x)),
}  # fmt: skip


# --- windows ----------------------------------------------------------------------------
def _full(
    node: op.Node, rolled: pl.Expr, *inputs: tuple[op.Node, pl.Expr], count: int = 0
) -> pl.Expr:
    """``rolled`` on rows whose window lies inside the symbol past the inputs' leading
    nulls; with ``count`` (the window, for forms that skip nulls) also none null inside."""
    ok = pl.col(ROW) >= node.lead
    for x, e in inputs:
        if count and x.holes:
            ok = ok & (e.is_null().cast(pl.UInt32).rolling_sum(count) == 0)
    return pl.when(ok).then(rolled)


def _ref(node: win.Ref, ref: Ref) -> pl.Expr:
    x = ref(node.x)
    if node.n > 0:
        return pl.when(pl.col(ROW) >= node.lead).then(x.shift(node.n))
    return pl.when(pl.col(ROWS_LEFT) >= -node.n).then(x.shift(node.n))


# ArgMax packs (order, position) into one int64 so that one rolling max finds the largest
# value and, on ties, the oldest row: order (a dense rank) < 2^26 distinct values in the
# high bits, 2^37 - 1 - position (rows of the panel) in the low 37 bits.
POSITION_BITS = 37
LOW_MASK = 2**POSITION_BITS - 1


def _order(node: win.Order, ref: Ref) -> pl.Expr:
    return ref(node.x).rank("dense", descending=node.descending)


def _arg_max(order: pl.Expr, n: int) -> pl.Expr:
    key = order.cast(pl.Int64) * (LOW_MASK + 1) + (LOW_MASK - pl.col(POSITION))
    oldest = LOW_MASK - (key.rolling_max(n, min_samples=n) & LOW_MASK)
    return oldest - pl.col(POSITION) + n


def _sign_sum(node: win.SignSum, ref: Ref) -> pl.Expr:
    """The signs of x_t - x_{t-k} (as floats: no cast per lag), summed, null if one is."""
    x = ref(node.x)
    signs = [(x - x.shift(k)).sign() for k in range(node.lo, node.hi + 1)]
    return _full(node, pl.sum_horizontal(signs, ignore_nulls=False))


def _over_window(agg: pl.Expr, n: int) -> pl.Expr:
    """``agg`` evaluated on each row's last n rows of the panel (a rolling context)."""
    return agg.rolling(index_column=POSITION, period=f"{n}i")


def _rolling(node: win.Rolling, ref: Ref) -> pl.Expr:
    x, n = ref(node.x), node.n
    full = lambda rolled: _full(node, rolled, (node.x, x), count=n)  # noqa: E731
    match node:
        case win.Count():
            return pl.when(pl.col(ROW) >= n - 1).then(
                x.is_not_null().cast(pl.Float64).rolling_sum(n)
            )
        case win.EMA():
            return x.ewm_mean(span=n, adjust=True, min_samples=n, ignore_nulls=False).over(SYMBOL)
        case win.ArgMax():
            return full(_arg_max(x, n))
        case win.Rank() if n == 1:
            return full(pl.lit(1.0))
        case win.Mad():
            return full(_over_window((x - x.mean()).abs().mean(), n))
        case win.TimeCov():
            weights = [k - (n + 1) / 2 for k in range(1, n + 1)]
            return full(x.fill_null(0.0).rolling_sum(n, weights=weights))
    return _full(node, _ROLLING[type(node)](x, n))


_ROLLING: dict[type, Callable[[pl.Expr, int], pl.Expr]] = {
    win.Mean: lambda x, n: x.rolling_mean(n, min_samples=n),
    win.Sum: lambda x, n: x.rolling_sum(n, min_samples=n),
    win.Std: lambda x, n: x.rolling_std(n, min_samples=n),
    win.Var: lambda x, n: x.rolling_var(n, min_samples=n),
    win.Max: lambda x, n: x.rolling_max(n, min_samples=n),
    win.Min: lambda x, n: x.rolling_min(n, min_samples=n),
    win.Skew: lambda x, n: x.rolling_skew(n, bias=False, min_samples=n).fill_nan(None),
    win.Kurt: lambda x, n: x.rolling_kurtosis(n, fisher=True, bias=False, min_samples=n).fill_nan(None),
    win.Rank: lambda x, n: x.rolling_rank(n, "average", min_samples=n) / n,
}  # fmt: skip


def _quantile(node: win.Quantile, ref: Ref) -> pl.Expr:
    rolled = ref(node.x).rolling_quantile(node.q, "linear", node.n, min_samples=node.n)
    return _full(node, rolled)


def _pair(node: win.Cov, ref: Ref) -> pl.Expr:
    """(sum(ab) - sum(a) sum(b) / n) / (n - 1) from three rolling sums: the moment form of
    ``pl.rolling_cov`` (which takes three rolling means and a count), at less cost."""
    a, b, n = ref(node.a), ref(node.b), node.n
    sums = [x.rolling_sum(n, min_samples=n) for x in (a * b, a, b)]
    return _full(node, (sums[0] - sums[1] * sums[2] / n) / (n - 1))


# Forms whose Polars result is not Float64 (booleans, positions); Order stays an integer.
_NOT_FLOAT = (*op.COMPARISONS, win.ArgMax)

_RULES: tuple[tuple[type | tuple[type, ...], Callable[..., pl.Expr]], ...] = (
    *((kind, build) for kind, build in _ELEMENTWISE.items()),
    (win.Ref, _ref),
    (win.SignSum, _sign_sum),
    (win.Order, _order),
    (win.Quantile, _quantile),
    (win.Rolling, _rolling),
    (win.Cov, _pair),
)
