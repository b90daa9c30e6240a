"""Prediction and portfolio metrics. Pure functions of arrays.

Conventions: daily simple returns; 252 trading days a year; risk-free rate 0;
annualised figures use geometric compounding (CAGR) or sqrt(252) scaling (volatility,
Sharpe). NaN inputs are dropped.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engine.schema import DATE, SCORE

TRADING_DAYS = 252


def rank_ic_series(predictions: pl.DataFrame, label: str) -> pl.DataFrame:
    """Per-date Spearman rank correlation between score and label (date, ic, n).

    Only dates with at least 3 scored, labelled rows count.
    """
    valid = predictions.filter(
        pl.col(SCORE).is_not_null() & pl.col(SCORE).is_not_nan() & pl.col(label).is_not_null()
    )
    return (
        valid.group_by(DATE)
        .agg(pl.corr(SCORE, label, method="spearman").alias("ic"), pl.len().alias("n"))
        .filter(pl.col("n") >= 3)
        .sort(DATE)
    )


def ic_summary(ic: np.ndarray) -> dict[str, float]:
    """Mean, std, ICIR (mean / std) and t-stat (mean / (std / sqrt(n))) of an IC series.

    The t-stat assumes independent periods; with overlapping labels (horizon longer
    than the rebalance interval) it is overstated.
    """
    ic = ic[~np.isnan(ic)]
    if ic.size < 2:
        return {
            "ic_mean": float(np.mean(ic)) if ic.size else float("nan"),
            "ic_std": float("nan"),
            "icir": float("nan"),
            "ic_tstat": float("nan"),
            "ic_periods": float(ic.size),
        }
    mean, std = float(ic.mean()), float(ic.std(ddof=1))
    return {
        "ic_mean": mean,
        "ic_std": std,
        "icir": mean / std if std > 0 else float("nan"),
        "ic_tstat": mean / std * np.sqrt(ic.size) if std > 0 else float("nan"),
        "ic_periods": float(ic.size),
    }


def r2_oos(y: np.ndarray, pred: np.ndarray) -> float:
    """Pooled out-of-sample R^2 = 1 - SSE / SST, SST around the mean of the test labels
    (the scikit-learn convention). Near 0 or negative is normal for stock returns."""
    mask = ~(np.isnan(y) | np.isnan(pred))
    y, pred = y[mask], pred[mask]
    sst = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    return 1.0 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else float("nan")


def total_return(returns: np.ndarray) -> float:
    r = returns[~np.isnan(returns)]
    return float(np.prod(1.0 + r) - 1.0)


def cagr(returns: np.ndarray) -> float:
    """Compound annual growth rate of daily simple returns."""
    r = returns[~np.isnan(returns)]
    if r.size == 0:
        return float("nan")
    growth = np.prod(1.0 + r)
    return float(growth ** (TRADING_DAYS / r.size) - 1.0) if growth > 0 else -1.0


def volatility(returns: np.ndarray) -> float:
    """Annualised standard deviation of daily returns."""
    r = returns[~np.isnan(returns)]
    return float(r.std(ddof=1) * np.sqrt(TRADING_DAYS)) if r.size > 1 else float("nan")


def sharpe(returns: np.ndarray) -> float:
    """Annualised Sharpe ratio, risk-free rate 0: mean / std * sqrt(252)."""
    r = returns[~np.isnan(returns)]
    if r.size < 2 or r.std(ddof=1) == 0:
        return float("nan")
    return float(r.mean() / r.std(ddof=1) * np.sqrt(TRADING_DAYS))


def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough fall of the equity curve, as a negative fraction."""
    r = np.nan_to_num(returns)
    equity = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.r_[1.0, equity])[1:]
    return float((equity / peak - 1.0).min()) if equity.size else float("nan")


def portfolio_summary(returns: np.ndarray, prefix: str = "") -> dict[str, float]:
    """CAGR, total return, volatility, Sharpe and max drawdown, keys prefixed."""
    return {
        f"{prefix}cagr": cagr(returns),
        f"{prefix}total_return": total_return(returns),
        f"{prefix}volatility": volatility(returns),
        f"{prefix}sharpe": sharpe(returns),
        f"{prefix}max_drawdown": max_drawdown(returns),
    }
