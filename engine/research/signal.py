"""The model's scores as a signal (alphalens-style): IC over time, IC decay over
horizons, and forward returns by score quintile.

The forward return of horizon h from rebalance date t is the compounded simple return
of Adj Close from the close of t to the close of t + h trading days (days t + 1 .. t + h
of the returns matrix): the signal's own horizon, before the execution lag. It is NaN
when the calendar ends before t + h or the name has no return on one of those days; a
total loss on one of them makes it ~-100 % (``backtest.RunningSums``).

Forward returns of consecutive rebalances overlap when h exceeds the rebalance spacing,
so every t-stat here also comes divided by sqrt(h / median spacing) (as
``metrics.ic_summary`` does): it counts only the independent periods.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from engine.research import metrics as mt
from engine.research.backtest import Market
from engine.schema import DATE, SCORE, SYMBOL

HORIZONS = (1, 5, 21, 63)  # trading days of the forward returns
QUINTILES = 5
ROLLING_IC_PERIODS = 12  # rebalance periods in the rolling mean of the IC


def fwd(h: int) -> str:
    """The column of the h-day forward return."""
    return f"fwd_{h}"


def ic_table(ic: pl.DataFrame, window: int = ROLLING_IC_PERIODS) -> pl.DataFrame:
    """date, ic, n, ic_rolling (mean of the last ``window`` periods; null before),
    ic_cum (running sum: a steady skill climbs in a straight line)."""
    return ic.sort(DATE).with_columns(
        pl.col("ic").rolling_mean(window).alias("ic_rolling"),
        pl.col("ic").cum_sum().alias("ic_cum"),
    )


def forward_returns(
    scores: pl.DataFrame, market: Market, horizons: Sequence[int] = HORIZONS
) -> pl.DataFrame:
    """``scores`` (date, symbol, score, ...) with a ``fwd_h`` column per horizon.

    Rows whose date or symbol is not in the market get NaN.
    """
    calendar = market.calendar.astype("datetime64[D]")
    day = np.searchsorted(calendar, scores[DATE].to_numpy().astype("datetime64[D]"))
    col = scores[SYMBOL].replace_strict(
        market.symbols.tolist(), np.arange(len(market.symbols)), default=None, return_dtype=pl.Int64
    )
    known = (day < len(calendar)) & col.is_not_null().to_numpy()
    known &= calendar[np.minimum(day, len(calendar) - 1)] == scores[DATE].to_numpy()
    col = col.fill_null(0).to_numpy()
    columns = []
    for h in horizons:
        end = day + h
        ok = known & (end < len(calendar))
        start, stop = np.where(ok, day + 1, 0), np.where(ok, end + 1, 0)
        compounded, days = market.sums.between(start, stop, col)
        out = np.where(ok & (days == h), compounded, np.nan)
        columns.append(pl.Series(fwd(h), out))
    return scores.with_columns(columns)


def _spacing(dates: pl.Series, calendar: np.ndarray) -> float:
    """Median trading days between consecutive scored dates (1 with fewer than two)."""
    days = np.searchsorted(calendar, dates.unique().sort().to_numpy().astype("datetime64[D]"))
    return float(np.median(np.diff(days))) if days.size > 1 else 1.0


def ic_decay(
    forward: pl.DataFrame, calendar: np.ndarray, horizons: Sequence[int] = HORIZONS
) -> pl.DataFrame:
    """horizon, ic_mean, ic_tstat, ic_tstat_overlap_adj, periods: the mean per-date rank
    IC of the score against each horizon's forward return (``forward_returns``)."""
    spacing = _spacing(forward[DATE], calendar.astype("datetime64[D]"))
    by_horizon = mt.rank_ic_by_label(forward, [fwd(h) for h in horizons])
    return _summaries({h: by_horizon[fwd(h)]["ic"].to_numpy() for h in horizons}, spacing, "ic")


def _summaries(series: dict[int, np.ndarray], spacing: float, name: str) -> pl.DataFrame:
    """horizon, <name>_mean, <name>_tstat, <name>_tstat_overlap_adj, periods: the
    ``metrics.ic_summary`` of each horizon's per-date series, its overlap h / ``spacing``."""
    keys = ("ic_mean", "ic_tstat", "ic_tstat_overlap_adj")  # of ic_summary
    named = {k: k.replace("ic", name, 1) for k in keys}
    rows = []
    for h, values in series.items():
        s = mt.ic_summary(values, overlap=h / spacing)
        rows.append(
            {"horizon": h, **{named[k]: s[k] for k in keys}, "periods": int(s["ic_periods"])}
        )
    schema = {"horizon": pl.Int64, **dict.fromkeys(named.values(), pl.Float64), "periods": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def quintile_excess(forward: pl.DataFrame, h: int) -> pl.DataFrame:
    """date, quintile, excess: per date, the mean h-day forward return of each score
    quintile minus the date's mean (over names with a score and a forward return; dates
    whose scores are all equal are left out). Eager: each group's mean sums its rows in
    order, so the tables are the same, bit for bit, from run to run."""
    ret = pl.col(fwd(h)).fill_nan(None)
    valid = forward.filter(ret.is_not_null() & pl.col(SCORE).is_not_nan()).filter(
        pl.col(SCORE).max().over(DATE) > pl.col(SCORE).min().over(DATE)  # equal: no ranks
    )
    pct = (pl.col(SCORE).rank("average") - 0.5) / pl.len()
    return (
        valid.with_columns(
            (pct.over(DATE) * QUINTILES).floor().cast(pl.Int64).add(1).alias("quintile"),
            (ret - ret.mean().over(DATE)).alias("excess"),
        )
        .group_by(DATE, "quintile", maintain_order=True)
        .agg(pl.col("excess").mean())
        .sort(DATE, "quintile")  # a fixed order: the means below sum in it
    )


def excess_tables(
    forward: pl.DataFrame, horizons: Sequence[int] = HORIZONS
) -> dict[int, pl.DataFrame]:
    """horizon -> its ``quintile_excess`` table."""
    return {h: quintile_excess(forward, h) for h in horizons}


def quintile_returns(excess: dict[int, pl.DataFrame]) -> pl.DataFrame:
    """horizon, quintile (1 = lowest scores .. 5), mean_excess, periods: the mean over
    dates of each quintile's h-day forward return minus the universe's (the date's mean),
    from ``excess_tables``."""
    frames = [
        table.group_by("quintile", maintain_order=True)
        .agg(pl.col("excess").mean().alias("mean_excess"), pl.len().alias("periods"))
        .with_columns(pl.lit(h, pl.Int64).alias("horizon"))
        for h, table in excess.items()
    ]
    return (
        pl.concat(frames)
        .select("horizon", "quintile", "mean_excess", "periods")
        .sort("horizon", "quintile")
    )


def quintile_spread(
    excess: dict[int, pl.DataFrame], dates: pl.Series, calendar: np.ndarray
) -> pl.DataFrame:
    """horizon, spread_mean, spread_tstat, spread_tstat_overlap_adj, periods: the top
    minus bottom quintile's h-day forward return, averaged over dates with both, from
    ``excess_tables``; t-stats allow for the overlap given the spacing of ``dates``."""
    spacing = _spacing(dates, calendar.astype("datetime64[D]"))
    spreads = {}
    for h, table in excess.items():
        wide = table.pivot(on="quintile", index=DATE, values="excess")
        top, bottom = str(QUINTILES), "1"
        spreads[h] = (
            (wide[top] - wide[bottom]).drop_nulls().to_numpy()
            if {top, bottom} <= set(wide.columns)
            else np.array([])
        )
    return _summaries(spreads, spacing, "spread")  # the same mean / t arithmetic as the IC


def signal_tables(
    scores: pl.DataFrame, market: Market, horizons: Sequence[int] = HORIZONS
) -> dict[str, pl.DataFrame]:
    """The score's quality over ``horizons``: ``ic_decay``,
    ``quintile_returns`` as ``quintiles``, and ``quintile_spread``."""
    forward = forward_returns(scores, market, horizons)
    excess = excess_tables(forward, horizons)
    return {
        "ic_decay": ic_decay(forward, market.calendar, horizons),
        "quintiles": quintile_returns(excess),
        "quintile_spread": quintile_spread(excess, forward[DATE], market.calendar),
    }
