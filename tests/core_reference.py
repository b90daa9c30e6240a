"""The test oracle of the ``core`` set: the 18 features as they were hand-written in
Polars before they became expressions (``engine/features/__init__.py`` up to the commit
that replaced them), kept verbatim so that ``core`` is held to the values it had, to
1e-12, on any panel a test makes (tests/test_feature_sets.py).

Not engine code: nothing under ``engine/`` imports it.

Every feature is a small function returning a ``pl.Expr`` named after its output
column. Windows are counted in rows of a symbol's own trading history and a value is
null until its window is full. Each rolling statistic is computed once over the
contiguous (symbol, date)-sorted column and masked where its window would cross a symbol
boundary, by ``_row`` (the row number within the symbol).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from engine.features import FeatureError
from engine.schema import ADJ_CLOSE, CLOSE, DATE, HIGH, INDEX_LEVEL, LOW, SYMBOL, VOLUME

ROW = "_row"  # 0-based row number inside the symbol's history
ROWS_LEFT = "_rows_left"  # rows after this one inside the symbol's history
RET_1D = "ret_1d"
MKT_RET_1D = "mkt_ret_1d"
RANGE_HL = "range_hl"
HISTORY = "history_rows"  # rows of the symbol's history up to and including t
# The Polars engine that collects feature panels. The in-memory engine rolls each window
# over the whole column; the streaming engine (Polars' default) rolls morsel by morsel, so
# its last bits, and the panel, would change with the number of threads. In-memory is
# also ~25% faster here (0.42 s against 0.56 s for the default panel on 2 cores).
ENGINE = "in-memory"


def _lag(expr: pl.Expr, k: int) -> pl.Expr:
    """``expr`` k rows earlier in the same symbol; null for the symbol's first k rows."""
    return pl.when(pl.col(ROW) >= k).then(expr.shift(k))


def _full_window(rolled: pl.Expr, window: int) -> pl.Expr:
    """Mask a column-wide rolling result to windows lying wholly inside one symbol.

    Nulls inside the window (e.g. the first ``ret_1d`` of a symbol) already make the
    rolling result null because ``min_samples`` equals the window.
    """
    return pl.when(pl.col(ROW) >= window - 1).then(rolled)


def _sma(column: str, window: int) -> pl.Expr:
    return _full_window(pl.col(column).rolling_mean(window, min_samples=window), window)


# --- base columns (stage 1) ---------------------------------------------------------
def log_return() -> pl.Expr:
    """ret_1d: daily log return of Adj Close, ln(P_t / P_{t-1}); null on the first row."""
    return (pl.col(ADJ_CLOSE) / _lag(pl.col(ADJ_CLOSE), 1)).log().alias(RET_1D)


def intraday_range() -> pl.Expr:
    """range_hl: (High - Low) / Close from raw (unadjusted) prices of the same day."""
    return ((pl.col(HIGH) - pl.col(LOW)) / pl.col(CLOSE)).alias(RANGE_HL)


# --- features (stage 2) -------------------------------------------------------------
def volatility(window: int) -> pl.Expr:
    """vol_{w}d: sample std (ddof=1) of the last w daily log returns; daily units.

    No ``_row`` mask needed: a window reaching into the previous symbol holds this
    symbol's first ``ret_1d``, which is null, so the rolling result is null."""
    return pl.col(RET_1D).rolling_std(window, min_samples=window).alias(f"vol_{window}d")


def momentum(window: int) -> pl.Expr:
    """mom_{w}d: simple return over the last w rows, P_t / P_{t-w} - 1."""
    return (pl.col(ADJ_CLOSE) / _lag(pl.col(ADJ_CLOSE), window) - 1).alias(f"mom_{window}d")


def momentum_skip(window: int = 252, skip: int = 21) -> pl.Expr:
    """mom_12_1 (by default): P_{t-skip} / P_{t-window} - 1, skipping the last month."""
    name = "mom_12_1" if (window, skip) == (252, 21) else f"mom_{window}_{skip}"
    lagged = _lag(pl.col(ADJ_CLOSE), skip) / _lag(pl.col(ADJ_CLOSE), window)
    return (lagged - 1).alias(name)


def price_to_sma(window: int) -> pl.Expr:
    """px_sma{w}: Adj Close / its simple moving average over the last w rows (incl. t)."""
    return (pl.col(ADJ_CLOSE) / _sma(ADJ_CLOSE, window)).alias(f"px_sma{window}")


def sma_ratio(fast: int, slow: int) -> pl.Expr:
    """sma{f}_sma{s}: SMA over f rows / SMA over s rows of Adj Close."""
    ratio = pl.col(ADJ_CLOSE).rolling_mean(fast, min_samples=fast) / pl.col(ADJ_CLOSE).rolling_mean(
        slow, min_samples=slow
    )
    return _full_window(ratio, max(fast, slow)).alias(f"sma{fast}_sma{slow}")  # one mask


def price_to_high(window: int) -> pl.Expr:
    """px_high{w}: Adj Close / max Adj Close of the last w rows (incl. t); in (0, 1]."""
    rolled = pl.col(ADJ_CLOSE).rolling_max(window, min_samples=window)
    return (pl.col(ADJ_CLOSE) / _full_window(rolled, window)).alias(f"px_high{window}")


def range_mean(window: int) -> pl.Expr:
    """range_hl_{w}d: mean of (High - Low) / Close over the last w rows."""
    return _sma(RANGE_HL, window).alias(f"range_hl_{window}d")


def volume_zscore(window: int) -> pl.Expr:
    """volume_z_{w}d: (V_t - mean) / std (ddof=1) of volume over the last w rows incl. t.

    Null when the window's std is 0 (constant volume).
    """
    mean = pl.col(VOLUME).rolling_mean(window, min_samples=window)
    std = pl.col(VOLUME).rolling_std(window, min_samples=window)
    z = pl.when((pl.col(ROW) >= window - 1) & (std > 0)).then((pl.col(VOLUME) - mean) / std)
    return z.alias(f"volume_z_{window}d")  # one mask for the mean and the std


def _moment(kind: str, window: int) -> str:
    return f"_{kind}_{window}"


def market_moments(window: int) -> dict[str, pl.Expr]:
    """The hidden columns ``market_beta`` and ``idiosyncratic_vol`` share: rolling sums of
    r, m, r*m, m*m and r*r over w rows (r: the symbol's, m: the index's daily log return).

    Why sums, in columns of their own: ``rolling_cov`` and ``rolling_var`` cost 2-4x a
    rolling sum, and Polars does not share rolling sub-expressions between two features;
    five sums computed once make beta and idiosyncratic vol ~4x cheaper. The moment
    formulas do not lose precision here: returns are ~1e-2 with means ~1e-4, so nothing
    cancels (beta within 9e-13 relative of ``rolling_cov`` on 1.9M rows; held to ``np.cov``
    at rtol 1e-9 in tests/test_features.py). A window
    reaching into the previous symbol holds this symbol's first (null) ``ret_1d``, and a
    date missing from the index a null m: the sums need all w pairs, else they are null.
    """
    r, m = pl.col(RET_1D), pl.col(MKT_RET_1D)
    terms = {"sr": r, "sm": m, "srm": r * m, "smm": m * m, "srr": r * r}
    return {
        _moment(kind, window): term.rolling_sum(window, min_samples=window)
        for kind, term in terms.items()
    }


# A window whose index returns are all 0 (a flat index) has var(m) = 0; from running sums
# it comes out as rounding residue of either sign (up to ~1e-20 after volatile stretches:
# ulp of the sums). var(m) at or below this floor, in squared daily log returns (a daily
# std of 1e-7; real indices move ~1e-2 a day), counts as 0, as DuckDB's exact var_samp = 0.
VAR_FLOOR = 1e-14


def _beta_parts(window: int) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """cov(r, m), var(m), var(r) over w rows, all with ddof=1, from ``market_moments``,
    and whether var(m) is above ``VAR_FLOOR`` (else beta is undefined)."""
    sr, sm, srm, smm, srr = (pl.col(_moment(k, window)) for k in ("sr", "sm", "srm", "smm", "srr"))
    cov = (srm - sr * sm / window) / (window - 1)
    var_m = (smm - sm * sm / window) / (window - 1)
    var_r = (srr - sr * sr / window) / (window - 1)
    return cov, var_m, var_r, var_m > VAR_FLOOR


def market_beta(window: int) -> pl.Expr:
    """beta_{w}d: cov(r, m) / var(m) of daily log returns of the symbol (r) and index (m)
    over the last w rows; null unless all w pairs exist and var(m) > 0. Needs
    ``market_moments(w)``."""
    cov, var_m, _, varies = _beta_parts(window)
    return pl.when(varies).then(cov / var_m).alias(f"beta_{window}d")


def idiosyncratic_vol(window: int) -> pl.Expr:
    """idio_vol_{w}d: sqrt(var(r) - beta^2 var(m)) over the last w rows, daily units;
    the std of the residual of r on m (ddof=1 throughout), floored at 0; null where beta
    is. Needs ``market_moments(w)``."""
    cov, var_m, var_r, varies = _beta_parts(window)
    resid = (var_r - cov * cov / var_m).clip(lower_bound=0.0)  # keeps nulls null
    return pl.when(varies).then(resid.sqrt()).alias(f"idio_vol_{window}d")


def forward_return(horizon: int) -> pl.Expr:
    """fwd_ret_{h}d (LABEL): P_{t+h} / P_t - 1; null for a symbol's last h rows."""
    lead = pl.when(pl.col(ROWS_LEFT) >= horizon).then(pl.col(ADJ_CLOSE).shift(-horizon))
    return (lead / pl.col(ADJ_CLOSE) - 1).alias(label_name(horizon))


def label_end_date(horizon: int) -> pl.Expr:
    """label_end: the date on which fwd_ret_{h}d becomes known (row t+h's date)."""
    return pl.when(pl.col(ROWS_LEFT) >= horizon).then(pl.col(DATE).shift(-horizon))


def label_name(horizon: int) -> str:
    return f"fwd_ret_{horizon}d"


# --- registry: name pattern -> builder ---------------------------------------------
@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    build: Callable[..., pl.Expr]
    parts: Callable[..., dict[str, pl.Expr]] | None = None  # hidden columns it reads


_PATTERNS = (
    _Pattern(re.compile(r"ret_1d"), lambda: pl.col(RET_1D)),
    _Pattern(re.compile(r"vol_(\d+)d"), volatility),
    _Pattern(re.compile(r"mom_(\d+)d"), momentum),
    _Pattern(re.compile(r"mom_12_1"), momentum_skip),
    _Pattern(re.compile(r"mom_(\d+)_(\d+)"), momentum_skip),
    _Pattern(re.compile(r"px_sma(\d+)"), price_to_sma),
    _Pattern(re.compile(r"sma(\d+)_sma(\d+)"), sma_ratio),
    _Pattern(re.compile(r"px_high(\d+)"), price_to_high),
    _Pattern(re.compile(r"range_hl"), lambda: pl.col(RANGE_HL)),
    _Pattern(re.compile(r"range_hl_(\d+)d"), range_mean),
    _Pattern(re.compile(r"volume_z_(\d+)d"), volume_zscore),
    _Pattern(re.compile(r"beta_(\d+)d"), market_beta, market_moments),
    _Pattern(re.compile(r"idio_vol_(\d+)d"), idiosyncratic_vol, market_moments),
)

DEFAULT_FEATURES: tuple[str, ...] = (
    "ret_1d",
    "vol_5d",
    "vol_21d",
    "vol_63d",
    "mom_21d",
    "mom_63d",
    "mom_126d",
    "mom_252d",
    "mom_12_1",
    "px_sma20",
    "px_sma50",
    "sma50_sma200",
    "px_high252",
    "range_hl",
    "range_hl_21d",
    "volume_z_21d",
    "beta_63d",
    "idio_vol_63d",
)
DEFAULT_LABEL_HORIZONS: tuple[int, ...] = (5, 21, 63)


def feature_expr(name: str) -> pl.Expr:
    """The expression computing feature ``name`` (e.g. ``vol_21d``, ``px_sma50``) from the
    base columns and the hidden columns of ``feature_parts(name)``.

    Raises
    ------
    FeatureError
        Unknown name, or a window that is not a positive integer.
    """
    pattern, windows = _parse(name)
    return pattern.build(*windows).alias(name)


def feature_parts(name: str) -> dict[str, pl.Expr]:
    """The hidden columns (name -> expression) that ``feature_expr(name)`` reads; features
    sharing one (beta and idiosyncratic vol) compute it once in ``feature_panel``."""
    pattern, windows = _parse(name)
    return {} if pattern.parts is None else pattern.parts(*windows)


def _parse(name: str) -> tuple[_Pattern, list[int]]:
    for pattern in _PATTERNS:
        match = pattern.regex.fullmatch(name)
        if match:
            windows = [int(g) for g in match.groups()]
            if any(w <= 0 for w in windows):
                raise FeatureError(f"feature {name!r}: windows must be > 0")
            if name.startswith("mom_") and len(windows) == 2 and windows[1] >= windows[0]:
                raise FeatureError(f"feature {name!r}: the skip must be shorter than the window")
            return pattern, windows
    known = ", ".join(DEFAULT_FEATURES)
    raise FeatureError(f"unknown feature {name!r}; known features (any window): {known}")


def with_base_columns(prices: pl.LazyFrame, index: pl.LazyFrame) -> pl.LazyFrame:
    """Add _row, _rows_left, ret_1d, range_hl and the index's mkt_ret_1d to the panel.

    ``prices`` must be sorted by (symbol, date); the result keeps that order.
    """
    # The index has one row per day (~4k): looked up by date, not joined. A left join
    # that keeps the panel's order gathers every column of the 1.9M rows again (~0.1 s).
    market = (
        index.sort(DATE)
        .select(DATE, (pl.col(INDEX_LEVEL) / pl.col(INDEX_LEVEL).shift(1)).log().alias(MKT_RET_1D))
        .collect()
    )
    mkt_ret = pl.col(DATE).replace_strict(
        market[DATE], market[MKT_RET_1D], default=None, return_dtype=pl.Float64
    )
    # Row numbers inside each symbol from the symbol boundaries of the sorted column:
    # cheaper than int_range().over(symbol), which partitions the frame.
    position = pl.int_range(pl.len())
    starts = pl.col(SYMBOL) != pl.col(SYMBOL).shift(1)
    ends = pl.col(SYMBOL) != pl.col(SYMBOL).shift(-1)
    return prices.with_columns(
        (position - pl.when(starts.fill_null(True)).then(position).forward_fill()).alias(ROW),
        (pl.when(ends.fill_null(True)).then(position).backward_fill() - position).alias(ROWS_LEFT),
    ).with_columns(log_return(), intraday_range(), mkt_ret.alias(MKT_RET_1D))


def feature_panel(
    prices: pl.LazyFrame,
    index: pl.LazyFrame,
    features: Sequence[str] = DEFAULT_FEATURES,
    horizons: Sequence[int] = DEFAULT_LABEL_HORIZONS,
    min_history: int = 1,
) -> pl.LazyFrame:
    """date, symbol, adj_close, history_rows, the features, then per horizon h the label
    ``fwd_ret_{h}d`` and its ``label_end_{h}d``; lazy, sorted by (symbol, date).

    ``min_history`` keeps only the rows with ``history_rows >= min_history``. Each column
    is filtered as it is made, so its full-length version is freed at once (the same
    values as filtering the panel; ~0.3 GB less at the peak on 1.9M rows, in memory).
    """
    repeated = sorted({name for name in features if list(features).count(name) > 1})
    if repeated:
        raise FeatureError(f"feature names repeated: {', '.join(repeated)}")
    exprs = [feature_expr(name) for name in features]
    parts = {k: v for name in features for k, v in feature_parts(name).items()}
    if any(h <= 0 for h in horizons):
        raise FeatureError(f"label horizons must be > 0, got {list(horizons)}")
    labels = [forward_return(h) for h in horizons]
    ends = [label_end_date(h).alias(f"label_end_{h}d") for h in horizons]
    base = with_base_columns(prices, index)
    if parts:  # dropped by the select below
        base = base.with_columns(expr.alias(name) for name, expr in parts.items())
    history = (pl.col(ROW) + 1).alias(HISTORY)
    if min_history > 1:
        columns = [pl.col(DATE), pl.col(SYMBOL), pl.col(ADJ_CLOSE), history, *exprs, *labels,
                   *ends]  # fmt: skip
        return base.select(column.filter(pl.col(ROW) + 1 >= min_history) for column in columns)
    return base.with_columns(*exprs, *labels, *ends, history).select(
        DATE,
        SYMBOL,
        ADJ_CLOSE,
        HISTORY,
        *features,
        *(label_name(h) for h in horizons),
        *(f"label_end_{h}d" for h in horizons),
    )
