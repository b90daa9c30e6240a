"""Daily backtest: target weights x daily returns -> equity, turnover and costs. Pure numpy.

Timing. The signal is taken at the close of rebalance day T. The trade happens at
the close of day T + lag (``execution_lag`` trading days, default 1), so the new
weights first earn the return of day T + lag + 1. Between trades the weights drift
with prices (no implicit daily rebalancing). Costs are charged on the trade day as
``cost_bps`` basis points of one-way turnover, sum |w_target - w_drifted|; the first
trade from cash therefore costs one full turnover.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

TOTAL_LOSS_GAP = 1e-12  # a day's return is floored at -1 + this (see ``RunningSums``)


@dataclass(frozen=True)
class RunningSums:
    """Running sums down each column of a (days x symbols) returns matrix, from which
    the compounded return of any run of days is one subtraction.

    A total loss (-100 %, a price of 0: ``archive.quality`` warns of it) counts as
    -100 % + ``TOTAL_LOSS_GAP`` so that the log growth stays finite: runs of days across it
    compound to ~-100 %, later ones are unaffected.

    Attributes
    ----------
    growth : float64, (days + 1) x symbols: row d holds the sum of log(1 + return) over
        days 0 .. d - 1 (a missing return: 0), so row 0 is zeros.
    seen : int32, the same shape: row d holds the number of days 0 .. d - 1 with a return.
    """

    growth: np.ndarray
    seen: np.ndarray

    @classmethod
    def of(cls, returns: np.ndarray) -> RunningSums:
        """The sums of ``returns`` (NaN where missing), built in place of one copy."""
        growth = np.zeros((returns.shape[0] + 1, returns.shape[1]))
        logs = growth[1:]
        np.copyto(logs, returns)
        np.nan_to_num(logs, copy=False)
        np.maximum(logs, TOTAL_LOSS_GAP - 1, out=logs)
        np.log1p(logs, out=logs)
        np.cumsum(logs, axis=0, out=logs)
        seen = np.zeros(growth.shape, np.int32)
        np.cumsum(np.isfinite(returns), axis=0, dtype=np.int32, out=seen[1:])
        return cls(growth, seen)

    def between(
        self, start: np.ndarray, stop: np.ndarray, col: np.ndarray | slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray]:
        """The compounded simple return over days ``start`` .. ``stop`` - 1 of columns
        ``col`` (0 for no day), and the number of those days with a return.

        ``start`` and ``stop`` are day indices (arrays, or one per row of ``col``)."""
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf of implausible prices
            compounded = np.expm1(self.growth[stop, col] - self.growth[start, col])
        return compounded, self.seen[stop, col] - self.seen[start, col]


@dataclass(frozen=True)
class Market:
    """The daily panel every model is backtested on (shared by all models of a run).

    Attributes
    ----------
    calendar : sorted trading days, datetime64[D].
    symbols : sorted symbols; the columns of ``returns``.
    returns : daily simple returns of Adj Close (dividends included), days x symbols;
        NaN on a symbol's first day and wherever it has no price.
    sector_code : integer sector of each symbol (index into ``sector_names``).
    sector_names : sector name of each code ("Unknown" for symbols without one).
    index : daily simple return of the S&P 500 price index (no dividends); NaN where the
        index file has no level (it can start later than the prices).
    universe : daily return of the equal-weight universe (rebalanced daily), Adj Close.
    """

    calendar: np.ndarray
    symbols: np.ndarray
    returns: np.ndarray
    sector_code: np.ndarray
    sector_names: tuple[str, ...]
    index: np.ndarray
    universe: np.ndarray

    @functools.cached_property
    def sums(self) -> RunningSums:
        """The running sums of ``returns`` (built on first use, then shared)."""
        return RunningSums.of(self.returns)


@dataclass(frozen=True)
class BacktestResult:
    """Daily series over the whole calendar (zeros before the first trade).

    Attributes
    ----------
    gross, net : daily simple portfolio returns before / after costs.
    turnover : one-way turnover traded at each day's close (0 on non-trade days).
    start : index of the first trade day; returns are meaningful from start + 1.
    """

    gross: np.ndarray
    net: np.ndarray
    turnover: np.ndarray
    start: int


def simple_returns(prices: np.ndarray) -> np.ndarray:
    """Day-over-day simple returns of a (days x symbols) price matrix; NaN where either
    price is missing and on the first day; inf after a price so small (a denormal index
    level: implausible) that the ratio leaves a float's range."""
    out = np.full(prices.shape, np.nan)
    with np.errstate(over="ignore"):
        out[1:] = prices[1:] / prices[:-1] - 1.0
    return out


def _segment(returns: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Daily returns of drifting weights ``w`` over ``returns`` rows, and the drifted
    weights at the end. Missing returns count as 0 (the name is held flat)."""
    held = np.flatnonzero(w)
    cash = 1.0 - w[held].sum()
    growth = np.cumprod(1.0 + np.nan_to_num(returns[:, held]), axis=0)
    value = growth @ w[held] + cash
    daily = np.diff(np.r_[1.0, value]) / np.r_[1.0, value[:-1]]
    drifted = np.zeros_like(w)
    drifted[held] = w[held] * growth[-1] / value[-1]
    return daily, drifted


def backtest(
    returns: np.ndarray, trade_days: np.ndarray, targets: np.ndarray, cost_bps: float
) -> BacktestResult:
    """Run the portfolio through ``returns`` (days x symbols).

    Parameters
    ----------
    returns : daily simple returns, NaN where missing.
    trade_days : increasing day indices at whose close the portfolio trades to
        ``targets[j]``; days beyond the calendar are dropped.
    targets : (len(trade_days), symbols) target weights, each row summing to <= 1.
    cost_bps : cost per unit of one-way turnover, in basis points.
    """
    n_days = returns.shape[0]
    keep = trade_days < n_days
    trade_days, targets = trade_days[keep], targets[keep]
    gross, turnover = np.zeros(n_days), np.zeros(n_days)
    if len(trade_days) == 0:
        return BacktestResult(gross, gross.copy(), turnover, start=n_days - 1)
    current = np.zeros(returns.shape[1])
    ends = np.r_[trade_days[1:], n_days - 1]
    for day, end, target in zip(trade_days, ends, targets, strict=True):
        turnover[day] = np.abs(target - current).sum()
        current = target
        if end > day:
            gross[day + 1 : end + 1], current = _segment(returns[day + 1 : end + 1], target)
    net = (1.0 + gross) * (1.0 - turnover * cost_bps / 1e4) - 1.0
    return BacktestResult(gross=gross, net=net, turnover=turnover, start=int(trade_days[0]))


def equal_weight_universe(returns: np.ndarray) -> np.ndarray:
    """Daily return of the equal-weighted universe (rebalanced daily), same Adj Close basis."""
    valid = ~np.isnan(returns)
    counts = valid.sum(axis=1)
    total = np.where(valid, returns, 0.0).sum(axis=1)
    return np.divide(total, counts, out=np.full(len(counts), np.nan), where=counts > 0)


def holding_period_returns(sums: RunningSums, trade_days: np.ndarray) -> np.ndarray:
    """Compounded simple return of every symbol from each trade day's close to the next
    trade day's close (the last period runs to the end of the calendar); (trades x
    symbols) from the returns' ``RunningSums``, NaN where a symbol has no return on any
    day of the period."""
    n_days = sums.growth.shape[0] - 1
    ends = np.r_[trade_days[1:], n_days - 1]
    period, days = sums.between(trade_days + 1, ends + 1)
    return np.where(days > 0, period, np.nan)
