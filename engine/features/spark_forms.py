"""Spark forms of the windowed operators whose DuckDB form Spark has no equivalent of.

Each form is SQL text in the DuckDB panel's terms (named windows ``w{n}``, ``s``, ``cum``,
the row number ``_row``) that sqlglot reads as DuckDB and writes as Spark SQL with the
rest of the panel (``engine.features.spark_sql``); each equals the Polars form on the
same rows. A window's values come as ``collect_list(x) over w{n}``, in row order, where
no Spark aggregate gives the statistic:

``Rank``
    (n + 1 + s) / 2n, s the sum over the window of sign(x_t - v): the average rank over n.
``ArgMax`` (``IdxMax``, ``IdxMin``)
    ``array_position`` of the window's ``array_max``: its first, the oldest, occurrence.
``Mad``
    the mean of |v - mean| over the window's values.
``Quantile`` (``Med``)
    the two order statistics around (n - 1) q of the sorted window, linearly
    interpolated (Polars' "linear").
``Skew``, ``Kurt``
    Spark's population moments converted to the bias-corrected sample ones (the factors
    of pandas' and Polars' ``bias=False``); null on a constant window, as Polars'.
``EMA``
    weighted sums over blocks of the symbol's rows (see ``_ema``).

A window's values read twice are collected once (``_let``). A window holding a null gives
null through ``when_full``'s count, as the DuckDB forms do.
"""

from __future__ import annotations

import math

from engine.features import windows as win
from engine.features.sql_compiler import Forms, Ref, ema_block, when_full


def _values(x: str, n: int) -> str:
    """The window's non-null values of x, oldest first."""
    return f"collect_list({x}) over w{n}"


# Lambda variables (_acc, _v, _s, _m) start with an underscore, as no factor's name does,
# and are none of the hidden columns (_row, _f_<field>, _c<k>): none shadows a column.
def _sum_over(values: str, term: str) -> str:
    """The sum of ``term`` (in ``_v``, each of ``values``) as a double."""
    return f"aggregate({values}, 0::double, (_acc, _v) -> _acc + {term})"


def _let(value: str, body: str, name: str = "_s") -> str:
    """``body`` (a double) with ``name`` bound to ``value``, computed once: Spark repeats
    a window expression written twice (one frame and list per repetition) and has no let;
    the aggregate of the one-element array binds it."""
    return f"aggregate(array({value}), 0::double, (_acc, {name}) -> {body})"


def _counted(node: win.Rolling, x: str) -> str | None:
    return x if node.x.holes else None


def _rank(node: win.Rank, ref: Ref) -> str:
    x, n = ref(node.x), node.n
    signs = _sum_over(_values(x, n), f"sign({x} - _v)")
    return when_full(node, f"(({n + 1}::double + {signs}) / {2 * n})", _counted(node, x))


def _arg_max(node: win.ArgMax, ref: Ref) -> str:
    x, n = ref(node.x), node.n
    position = _let(_values(x, n), "array_position(_s, array_max(_s))::double")
    return when_full(node, position, _counted(node, x))


def _mad(node: win.Mad, ref: Ref) -> str:
    """The mean of |v - m| over the window's values v, m their mean."""
    x, n = ref(node.x), node.n
    mean = f"{_sum_over('_s', '_v')} / {n}"
    deviation = f"{_sum_over('_s', 'abs(_v - _m)')} / {n}"
    return when_full(node, _let(_values(x, n), _let(mean, deviation, "_m")), _counted(node, x))


def _quantile(node: win.Quantile, ref: Ref) -> str:
    """The order statistics around (n - 1) q of the sorted window, linearly interpolated."""
    x, n = ref(node.x), node.n
    position = (n - 1) * node.q
    low = math.floor(position)
    value = f"_s[{low + 1}]"  # 1-based, as DuckDB
    if position > low:
        value = f"({value} + (_s[{low + 2}] - {value}) * {position - low!r})"
    return when_full(node, _let(f"sort_array({_values(x, n)})", value), _counted(node, x))


def _skew(node: win.Skew, ref: Ref) -> str:
    """G1 = g1 sqrt(n (n - 1)) / (n - 2), g1 Spark's (population) skewness."""
    x, n = ref(node.x), node.n
    factor = math.sqrt(n * (n - 1)) / (n - 2)
    return when_full(node, f"(skewness({x}) over w{n} * {factor!r})", _counted(node, x))


def _kurt(node: win.Kurt, ref: Ref) -> str:
    """G2 = ((n + 1) g2 + 6) (n - 1) / ((n - 2) (n - 3)), g2 Spark's population excess
    kurtosis."""
    x, n = ref(node.x), node.n
    factor = (n - 1) / ((n - 2) * (n - 3))
    value = f"((kurtosis({x}) over w{n} * {n + 1} + 6) * {factor!r})"
    return when_full(node, value, _counted(node, x))


def _ema(node: win.EMA, ref: Ref) -> str:
    """Each row's weighted mean over its block of 2P rows so far, P = ``ema_block``'s: the
    rows past P weigh below EMA_TAIL of the total. Of two blockings, one shifted by P, a
    row takes the one in which it is at least P rows in (or which starts at the symbol's
    first row). A row k rows into its block weighs b^-k; the common factor cancels."""
    x, n = ref(node.x), node.n
    b, p = ema_block(n)
    seen = f"count({x}) over cum >= {n}"
    if b == 0:  # span 1: the value itself
        return f"(case when {seen} then {x} end)"
    means = []
    for shift in (0, p):
        block = f"(_row + {shift})"
        weight = f"pow({b!r}, - ({block} % {2 * p}))"
        frame = (f"(partition by symbol, {block} // {2 * p} order by date "
                 "rows between unbounded preceding and current row)")  # fmt: skip
        num = f"sum({x} * {weight}) over {frame}"
        den = f"sum(case when {x} is not null then {weight} end) over {frame}"
        means.append(f"({num} / {den})")
    mean = f"(case when _row % {2 * p} >= {p} then {means[0]} else {means[1]} end)"
    return f"(case when {x} is not null and {seen} then {mean} end)"


SPARK_FORMS: Forms = {
    win.Rank: _rank,
    win.ArgMax: _arg_max,
    win.Mad: _mad,
    win.Quantile: _quantile,
    win.Skew: _skew,
    win.Kurt: _kurt,
    win.EMA: _ema,
}
"""The Spark form of every operator whose DuckDB form Spark lacks, by node type."""
