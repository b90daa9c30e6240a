"""Scores -> long-only portfolio weights at each rebalance date.

At each rebalance the ``n`` highest-scored names are held. Their weights follow one of
four schemes (``Weighting``):

* ``equal``: 1/n each;
* ``inverse_vol``: proportional to 1 / sd of the last ``VOL_WINDOW`` daily returns;
* ``min_variance``: argmin w'Sw;
* ``mean_variance``: argmax mu'w - risk_aversion / 2 w'Sw, with the Grinold-Kahn
  forecast mu_i = IC_ASSUMED * vol_i * z_i (z: the name's cross-sectional z-score of
  the model score on that date, vol: annualised).

S is the Ledoit-Wolf shrinkage covariance (scikit-learn) of the last ``COV_WINDOW``
daily returns, annualised. Every scheme is long-only with a cap on each name and an
optional cap on each sector. The name cap is never below 1/n, so without a sector cap
the portfolio is fully invested; a sector cap that the chosen names cannot meet leaves
the remainder in cash (returns 0), which the holdings show.

Point in time: every input at rebalance T (scores, returns windows) is dated <= T.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from engine.config import PortfolioSpec
from engine.schema import DATE, SCORE, SYMBOL, WEIGHT, Weighting

log = logging.getLogger(__name__)

VOL_WINDOW = 63  # trading days of returns behind inverse-volatility weights
COV_WINDOW = 252  # trading days of returns behind the covariance matrix
IC_ASSUMED = 0.05  # information coefficient in the Grinold-Kahn forecast of mean-variance
_TRADING_DAYS = 252
_EPS = 1e-12


def top_n(predictions: pl.DataFrame, n: int) -> pl.DataFrame:
    """The ``n`` highest-scored symbols on each date (ties broken by symbol, for
    determinism). Rows with a null or NaN score are never selected."""
    scored = predictions.filter(pl.col(SCORE).is_not_null() & pl.col(SCORE).is_not_nan())
    return (
        scored.sort([DATE, SCORE, SYMBOL], descending=[False, True, False])
        .group_by(DATE, maintain_order=True)
        .head(n)
    )


def weights(predictions: pl.DataFrame, n: int) -> pl.DataFrame:
    """Equal target weights (date, symbol, weight, score) of the top ``n`` on each date.

    The other schemes need return histories: see :func:`scheme_weights`.
    """
    held = top_n(predictions, n)
    return held.with_columns((1.0 / pl.len().over(DATE)).alias(WEIGHT)).select(
        DATE, SYMBOL, WEIGHT, SCORE
    )


def capped(raw: np.ndarray, groups: np.ndarray, cap: float, group_cap: float | None) -> np.ndarray:
    """Long-only weights proportional to ``raw`` (>= 0) under a per-name and per-group cap.

    Water-filling: names (or whole groups) that breach a cap are fixed at it and the rest of
    the budget is shared among the others in proportion to ``raw``. Sums to 1 unless the
    group caps make that impossible (the shortfall is cash).
    """
    raw = np.where(raw > 0, raw, 0.0) + _EPS
    w, free = np.zeros(len(raw)), np.ones(len(raw), dtype=bool)
    for _ in range(4 * len(raw) + 2):  # each pass fixes a name or a whole group
        remaining = 1.0 - w[~free].sum()
        if free.any() and remaining > _EPS:
            w[free] = remaining * raw[free] / raw[free].sum()
        else:
            w[free] = 0.0
        over = free & (w > cap + _EPS)
        if over.any():
            w[over], free[over] = cap, False
            continue
        totals = np.bincount(groups, weights=w) if group_cap is not None else np.zeros(0)
        bad = np.flatnonzero(totals > group_cap + _EPS) if group_cap is not None else totals
        if bad.size == 0:
            break
        for g in bad:
            members = groups == g
            w[members] *= group_cap / totals[g]
            free[members] = False
    return w


def ledoit_wolf_covariance(returns: np.ndarray) -> np.ndarray:
    """Annualised Ledoit-Wolf covariance of daily returns (days x names); NaN counts as 0.
    Not finite where returns are beyond what a variance can hold (implausible prices)."""
    from sklearn.covariance import ledoit_wolf  # lazily: only the optimised schemes need it

    clean = np.nan_to_num(returns)
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(np.square(clean).sum()):  # a variance beyond a float's range
            return np.full((clean.shape[1], clean.shape[1]), np.nan)
        cov, _ = ledoit_wolf(clean)
    return cov * _TRADING_DAYS


def inverse_vol_raw(returns: np.ndarray) -> np.ndarray:
    """1 / sd of each column's daily returns (NaN ignored); names with sd 0 or no data get
    the median of the others, as do names whose sd overflows (implausible prices)."""
    with np.errstate(over="ignore", invalid="ignore"):
        sd = (
            np.nanstd(returns, axis=0, ddof=1)
            if len(returns) > 1
            else np.full(returns.shape[1], np.nan)
        )
    ok = np.isfinite(sd) & (sd > 0)
    fill = np.median(sd[ok]) if ok.any() else 1.0
    return 1.0 / np.where(ok, sd, fill)


def optimised(
    cov: np.ndarray,
    mu: np.ndarray | None,
    groups: np.ndarray,
    cap: float,
    group_cap: float | None,
    risk_aversion: float,
) -> np.ndarray:
    """Minimum variance (``mu`` None) or mean-variance weights under the same caps as
    :func:`capped`, by SLSQP started from capped equal weights (returned if SLSQP fails)."""
    from scipy.optimize import minimize  # lazily: only the optimised schemes need it

    start = capped(np.ones(len(cov)), groups, cap, group_cap)
    budget = start.sum()
    lam = risk_aversion if mu is not None else 2.0
    mu = np.zeros(len(cov)) if mu is None else mu

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        sw = cov @ w
        return float(lam / 2 * w @ sw - mu @ w), lam * sw - mu

    constraints = [
        {"type": "eq", "fun": lambda w: w.sum() - budget, "jac": lambda w: np.ones_like(w)}
    ]
    if group_cap is not None:
        member = (groups[None, :] == np.unique(groups)[:, None]).astype(float)
        constraints.append(
            {"type": "ineq", "fun": lambda w: group_cap - member @ w, "jac": lambda w: -member}
        )
    result = minimize(
        objective, start, jac=True, method="SLSQP", bounds=[(0.0, cap)] * len(cov),
        constraints=constraints, options={"ftol": 1e-12, "maxiter": 500},
    )  # fmt: skip
    if not result.success:
        log.debug("SLSQP did not converge (%s); using capped equal weights", result.message)
        return start
    return np.clip(result.x, 0.0, cap)


def grinold_mu(z: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Annualised expected returns IC_ASSUMED * vol * z from score z-scores and covariance."""
    return IC_ASSUMED * np.sqrt(np.diag(cov)) * z


def date_weights(
    scores: np.ndarray, z: np.ndarray, history: np.ndarray, groups: np.ndarray, spec: PortfolioSpec
) -> np.ndarray:
    """Weights of the held names on one date.

    Parameters
    ----------
    scores, z : model score and its cross-sectional z-score of each held name.
    history : daily simple returns of the held names up to and including the date
        (days x names, oldest first, at most ``COV_WINDOW`` rows).
    groups : integer sector code of each held name.
    """
    cap = max(spec.max_weight, 1.0 / len(scores))
    if spec.weighting is Weighting.EQUAL:
        return capped(np.ones(len(scores)), groups, cap, spec.sector_cap)
    if spec.weighting is Weighting.INVERSE_VOL:
        return capped(inverse_vol_raw(history[-VOL_WINDOW:]), groups, cap, spec.sector_cap)
    cov = ledoit_wolf_covariance(history)
    if not np.isfinite(cov).all():  # no covariance to optimise: the capped equal weights
        return capped(np.ones(len(scores)), groups, cap, spec.sector_cap)
    mu = grinold_mu(z, cov) if spec.weighting is Weighting.MEAN_VARIANCE else None
    return optimised(cov, mu, groups, cap, spec.sector_cap, spec.risk_aversion)


def scheme_weights(
    predictions: pl.DataFrame,
    spec: PortfolioSpec,
    calendar: np.ndarray,
    symbols: np.ndarray,
    returns: np.ndarray,
    sector_code: np.ndarray,
) -> pl.DataFrame:
    """Target weights (date, symbol, weight, score) at every date of ``predictions``.

    Parameters
    ----------
    predictions : date, symbol, score rows (one date per rebalance).
    calendar, symbols : the axes of ``returns`` (sorted trading days, sorted symbols).
    returns : daily simple returns, days x symbols, NaN where missing.
    sector_code : integer sector of each symbol of ``symbols``.
    """
    if (
        spec.weighting is Weighting.EQUAL
        and spec.sector_cap is None
        and spec.max_weight * spec.top_stocks >= 1
    ):
        return weights(predictions, spec.top_stocks)
    scored = predictions.filter(pl.col(SCORE).is_not_null() & pl.col(SCORE).is_not_nan())
    z = (pl.col(SCORE) - pl.col(SCORE).mean().over(DATE)) / pl.col(SCORE).std().over(DATE)
    held = top_n(scored.with_columns(z.fill_nan(0.0).fill_null(0.0).alias("_z")), spec.top_stocks)
    out = []
    for (date,), day in held.group_by(DATE, maintain_order=True):
        cols = np.searchsorted(symbols, day[SYMBOL].to_numpy())
        end = int(np.searchsorted(calendar, np.datetime64(date, "D"), side="right"))
        history = returns[max(end - COV_WINDOW, 0) : end][:, cols]
        w = date_weights(
            day[SCORE].to_numpy(), day["_z"].to_numpy(), history, sector_code[cols], spec
        )
        out.append(day.select(DATE, SYMBOL, SCORE).with_columns(pl.Series(WEIGHT, w)))
    if not out:
        return pl.DataFrame(
            schema={DATE: pl.Date, SYMBOL: pl.String, WEIGHT: pl.Float64, SCORE: pl.Float64}
        )
    return pl.concat(out).filter(pl.col(WEIGHT) > 0).select(DATE, SYMBOL, WEIGHT, SCORE)
