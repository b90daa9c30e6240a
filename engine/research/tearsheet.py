"""Tear-sheet tables of a backtest: calendar returns, drawdowns, rolling risk, costs.

Every function takes the run's daily equity frame (``RunResult.equity``: date, gross,
net, turnover, index, universe as daily simple returns, NaN where unknown; the index is
a price index that can start later than the prices) and returns a Polars frame. Returns
compound geometrically within a month or year; a period with no observation is null.
"""

from __future__ import annotations

import calendar

import numpy as np
import polars as pl

from engine.research import metrics as mt
from engine.schema import DATE

ROLLING_DAYS = 252  # trading days in the rolling (12-month) Sharpe ratio and beta
MONTHS = tuple(calendar.month_abbr[1:])  # Jan .. Dec
RETURN_COLUMNS = ("net", "gross", "index", "universe")


def _compound(column: str) -> pl.Expr:
    """Compounded simple return of a column of daily returns; null when it has none."""
    r = pl.col(column).fill_nan(None)
    return pl.when(r.count() > 0).then((1 + r).product() - 1).alias(column)


def monthly_returns(equity: pl.DataFrame, column: str = "net") -> pl.DataFrame:
    """year, Jan .. Dec: the compounded return of ``column`` in each calendar month."""
    by_month = equity.group_by(
        pl.col(DATE).dt.year().alias("year"), pl.col(DATE).dt.month().alias("month")
    ).agg(_compound(column))
    wide = by_month.sort("month").pivot(on="month", index="year", values=column)
    names = {str(m): MONTHS[m - 1] for m in range(1, 13)}
    wide = wide.rename({c: names[c] for c in wide.columns if c in names})
    missing = [pl.lit(None, pl.Float64).alias(m) for m in MONTHS if m not in wide.columns]
    return wide.with_columns(missing).select("year", *MONTHS).sort("year")


def yearly_returns(equity: pl.DataFrame) -> pl.DataFrame:
    """year, net, gross, index, universe, excess_vs_index, excess_vs_universe, turnover,
    cost_drag, days.

    Compounded returns of each calendar year; excess = net - benchmark (arithmetic, on
    the year's returns; the index's only over the days it exists); turnover is the sum of
    one-way turnover traded; cost_drag = gross - net.
    """
    yearly = equity.group_by(pl.col(DATE).dt.year().alias("year")).agg(
        *(_compound(c) for c in RETURN_COLUMNS),
        pl.col("turnover").sum(),
        pl.len().alias("days"),
    )
    return yearly.sort("year").select(
        "year",
        *RETURN_COLUMNS,
        (pl.col("net") - pl.col("index")).alias("excess_vs_index"),
        (pl.col("net") - pl.col("universe")).alias("excess_vs_universe"),
        "turnover",
        (pl.col("gross") - pl.col("net")).alias("cost_drag"),
        "days",
    )


def _drawdown(returns: np.ndarray) -> np.ndarray:
    """Drawdown from the first known return on; NaN before it."""
    out = np.full(len(returns), np.nan)
    known = np.flatnonzero(np.isfinite(returns))
    if known.size:
        out[known[0] :] = mt.drawdown(returns[known[0] :])
    return out


def drawdowns(equity: pl.DataFrame) -> pl.DataFrame:
    """date, net, index, universe: equity / running peak - 1 (<= 0) of each series."""
    cols = ("net", "index", "universe")
    return pl.DataFrame({DATE: equity[DATE], **{c: _drawdown(equity[c].to_numpy()) for c in cols}})


def worst_drawdowns(equity: pl.DataFrame, top: int = 5) -> pl.DataFrame:
    """The ``top`` deepest drawdown episodes of the net curve: peak, trough, recovery
    (the first day back at the peak; null if not yet), depth (negative fraction),
    days_to_trough and days_to_recover (trading days; null if not recovered)."""
    dd = _drawdown(equity["net"].to_numpy())
    dates = equity[DATE].to_list()
    under = np.nan_to_num(dd) < 0
    starts = np.flatnonzero(under & ~np.r_[False, under[:-1]])
    ends = np.flatnonzero(under & ~np.r_[under[1:], False])  # last day under water
    rows = []
    for start, end in zip(starts, ends, strict=True):
        trough = start + int(np.argmin(dd[start : end + 1]))
        recovered = end + 1 < len(dd)
        rows.append(
            {
                "peak": dates[start - 1] if start else dates[start],
                "trough": dates[trough],
                "recovery": dates[end + 1] if recovered else None,
                "depth": float(dd[trough]),
                "days_to_trough": trough - start + 1,
                "days_to_recover": end + 1 - trough if recovered else None,
            }
        )
    schema = {
        "peak": pl.Date,
        "trough": pl.Date,
        "recovery": pl.Date,
        "depth": pl.Float64,
        "days_to_trough": pl.Int64,
        "days_to_recover": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema).sort("depth").head(top)


def rolling_risk(equity: pl.DataFrame, window: int = ROLLING_DAYS) -> pl.DataFrame:
    """date, sharpe_net, sharpe_universe, beta_index, beta_universe, volatility_net over
    the trailing ``window`` trading days (annualised Sharpe and volatility, rf 0; beta =
    cov / var of the benchmark). Null until a full window of known returns."""
    r = {c: pl.col(c).fill_nan(None) for c in ("net", "index", "universe")}
    scale = np.sqrt(mt.TRADING_DAYS)

    def sharpe(e: pl.Expr) -> pl.Expr:
        return e.rolling_mean(window) / e.rolling_std(window) * scale

    def beta(b: pl.Expr) -> pl.Expr:
        return pl.rolling_cov(r["net"], b, window_size=window) / b.rolling_var(window)

    return equity.select(
        DATE,
        sharpe(r["net"]).alias("sharpe_net"),
        sharpe(r["universe"]).alias("sharpe_universe"),
        beta(r["index"]).alias("beta_index"),
        beta(r["universe"]).alias("beta_universe"),
        (r["net"].rolling_std(window) * scale).alias("volatility_net"),
    )


def trading_costs(equity: pl.DataFrame) -> pl.DataFrame:
    """date, turnover, cost, cost_cum on each trade day: the one-way turnover traded and
    the fraction of the book paid in costs, 1 - (1 + net) / (1 + gross), and its running
    sum (the cumulative cost drag, arithmetic)."""
    cost = 1 - (1 + pl.col("net")) / (1 + pl.col("gross"))
    return (
        equity.filter(pl.col("turnover") > 0)
        .select(DATE, "turnover", cost.alias("cost"))
        .with_columns(pl.col("cost").cum_sum().alias("cost_cum"))
    )
