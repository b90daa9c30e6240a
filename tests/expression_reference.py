"""Naive per-symbol references of the factor operators (numpy and pandas, one window at a
time), for tests/test_expressions.py."""

from __future__ import annotations

import numpy as np
import pandas as pd


def full_windows(x: np.ndarray, n: int, f) -> np.ndarray:
    """f of each full window of n values ending at row i (nan if any is nan)."""
    out = np.full(len(x), np.nan)
    for i in range(n - 1, len(x)):
        w = x[i - n + 1 : i + 1]
        if not np.isnan(w).any():
            out[i] = f(w)
    return out


def _slope(w: np.ndarray) -> float:
    return np.polyfit(np.arange(1, len(w) + 1), w, 1)[0]


def _resi(w: np.ndarray) -> float:
    slope, intercept = np.polyfit(np.arange(1, len(w) + 1), w, 1)
    return w[-1] - (intercept + slope * len(w))


def _rsquare(w: np.ndarray) -> float:
    if np.std(w, ddof=1) <= 2e-5:
        return np.nan
    return np.corrcoef(np.arange(len(w)), w)[0, 1] ** 2


ROLLING = {
    "Mean": np.mean,
    "Sum": np.sum,
    "Std": lambda w: np.std(w, ddof=1),
    "Var": lambda w: np.var(w, ddof=1),
    "Skew": lambda w: pd.Series(w).skew(),
    "Kurt": lambda w: pd.Series(w).kurt(),
    "Max": np.max,
    "Min": np.min,
    "Med": np.median,
    "Mad": lambda w: np.mean(np.abs(w - w.mean())),
    "Rank": lambda w: pd.Series(w).rank(pct=True).iloc[-1],
    "IdxMax": lambda w: np.argmax(w) + 1.0,
    "IdxMin": lambda w: np.argmin(w) + 1.0,
    "Slope": _slope,
    "Resi": _resi,
    "Rsquare": _rsquare,
    "WMA": lambda w: np.sum(w * np.arange(1, len(w) + 1)) / np.sum(np.arange(1, len(w) + 1)),
}


def rolling(op: str, x: np.ndarray, n: int) -> np.ndarray:
    """The reference of operator ``op`` (a key of ROLLING, or Count, Delta, Ref, EMA)."""
    if op == "Count":
        out = np.array([np.sum(~np.isnan(x[max(0, i - n + 1) : i + 1])) for i in range(len(x))])
        return np.where(np.arange(len(x)) >= n - 1, out.astype(float), np.nan)
    if op == "Ref":
        return np.concatenate([np.full(n, np.nan), x[:-n]])[: len(x)]
    if op == "Delta":
        return x - rolling("Ref", x, n)
    if op == "EMA":
        s = pd.Series(x)
        out = s.ewm(span=n, adjust=True, ignore_na=False).mean().to_numpy()
        seen = s.notna().cumsum().to_numpy()
        return np.where(np.isnan(x) | (seen < n), np.nan, out)
    return full_windows(x, n, ROLLING[op])


def quantile(x: np.ndarray, n: int, q: float) -> np.ndarray:
    return full_windows(x, n, lambda w: np.quantile(w, q))


def pair(op: str, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(a), np.nan)
    for i in range(n - 1, len(a)):
        wa, wb = a[i - n + 1 : i + 1], b[i - n + 1 : i + 1]
        if np.isnan(wa).any() or np.isnan(wb).any():
            continue
        if op == "Cov":
            out[i] = np.cov(wa, wb, ddof=1)[0, 1]
        elif np.std(wa, ddof=1) > 2e-5 and np.std(wb, ddof=1) > 2e-5:
            out[i] = np.corrcoef(wa, wb)[0, 1]
    return out


def finite(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, np.nan)
