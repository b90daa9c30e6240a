"""Factor attribution: how much of the portfolio's return over the equal-weight universe
is explained by factor tilts, and what is left (the alpha).

The regression, on daily simple returns over the days every series exists::

    net_t - universe_t = alpha + sum_k beta_k f_k,t + e_t

``f_k`` are the factor returns of ``research.factors`` (the market factor is the
universe itself, so its loading is the beta to the universe minus 1). Ordinary least
squares with Newey-West (HAC, Bartlett kernel) standard errors (``newey_west_ols``, the
covariance statsmodels gives for ``cov_type="HAC"``: no small-sample correction, normal
p-values; the tests hold it to statsmodels), whose lag
follows the Newey-West (1994) plug-in rule floor(4 (T / 100)^(2/9)) (8 lags for T =
2,500 days): daily portfolio returns carry little autocorrelation, but the factor legs
are held for a rebalance period, and heteroskedasticity is the rule in daily returns.

Each term's ``contribution`` is its share of the mean daily excess return, annualised
(x 252, arithmetic): beta_k mean(f_k) for a factor, alpha for the intercept. The
contributions add up to the mean excess return exactly (OLS with an intercept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.research.metrics import TRADING_DAYS

ALPHA = "alpha"
# The attribution's metric names (metrics JSON, MLflow, comparison.csv), defined here only.
ALPHA_METRIC = "factor_alpha"  # annualised
ALPHA_TSTAT_METRIC = "factor_alpha_tstat"
R2_METRIC = "factor_r2"
DAYS_METRIC = "factor_days"


def loading_metric(factor: str) -> str:
    """The metric name of ``factor``'s loading."""
    return f"factor_{factor}_loading"


def tstat_metric(factor: str) -> str:
    """The metric name of the t-stat of ``factor``'s loading."""
    return f"factor_{factor}_tstat"


MIN_DAYS = 30  # fewer common days than this: no regression


def newey_west_lags(days: int) -> int:
    """The Newey-West (1994) plug-in lag: floor(4 (days / 100)^(2/9))."""
    return math.floor(4 * (days / 100) ** (2 / 9)) if days > 0 else 0


@dataclass(frozen=True)
class FactorFit:
    """The fitted attribution.

    Attributes
    ----------
    table : term, coef, tstat, pvalue, contribution; the first row is ``alpha``
        (coef and contribution annualised: daily x 252), then one row per factor
        (coef: the loading, unitless; contribution: annualised).
    r2 : R^2 of the regression (share of the daily excess return's variance explained).
    days : days in the regression.
    lags : Newey-West lags used.
    excess_mean : mean daily excess return, annualised (x 252): the contributions' sum.
    """

    table: pl.DataFrame
    r2: float
    days: int
    lags: int
    excess_mean: float

    def stats(self) -> dict[str, float]:
        """The fit's scalars: r2, days, lags, excess_mean."""
        return {
            "r2": self.r2,
            "days": float(self.days),
            "lags": float(self.lags),
            "excess_mean": self.excess_mean,
        }

    def metrics(self) -> dict[str, float]:
        """Flat metrics: ``factor_alpha`` (annualised) and its t-stat, ``factor_r2``,
        ``factor_days``, and each factor's loading and its t-stat (NaN when unknown)."""
        out = {R2_METRIC: self.r2, DAYS_METRIC: float(self.days)}
        for row in self.table.iter_rows(named=True):
            if row["term"] == ALPHA:
                out |= {ALPHA_METRIC: row["coef"], ALPHA_TSTAT_METRIC: row["tstat"]}
            else:
                name = row["term"]
                out |= {loading_metric(name): row["coef"], tstat_metric(name): row["tstat"]}
        return {k: math.nan if v is None else float(v) for k, v in out.items()}


def empty_fit(names: list[str]) -> FactorFit:
    """A fit of NaNs (too few days to regress)."""
    nan = [math.nan] * (len(names) + 1)
    table = pl.DataFrame(
        {"term": [ALPHA, *names], "coef": nan, "tstat": nan, "pvalue": nan, "contribution": nan}
    )
    return FactorFit(table, math.nan, 0, 0, math.nan)


def factor_attribution(excess: np.ndarray, factors: pl.DataFrame) -> FactorFit:
    """Regress the daily excess return on the factor returns (OLS, Newey-West t-stats).

    Parameters
    ----------
    excess : daily simple return of the portfolio (net) minus the universe's, one per
        row of ``factors``; NaN where unknown.
    factors : one Float64 column per factor (no date column), aligned with ``excess``.
    """
    names = factors.columns
    x = factors.to_numpy().astype(np.float64)
    y = np.asarray(excess, np.float64)
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
    if keep.sum() < max(MIN_DAYS, len(names) + 2):
        return empty_fit(names)
    lags = newey_west_lags(int(keep.sum()))
    design = np.column_stack([np.ones(keep.sum()), x[keep]])
    try:
        fit = newey_west_ols(y[keep], design, lags)
    except np.linalg.LinAlgError:  # values so large (near 1e300) that the SVD fails
        return empty_fit(names)
    scale = np.r_[TRADING_DAYS, np.ones(len(names))]
    contribution = np.r_[fit.params[0], fit.params[1:] * x[keep].mean(axis=0)] * TRADING_DAYS
    table = pl.DataFrame(
        {
            "term": [ALPHA, *names],
            "coef": fit.params * scale,
            "tstat": fit.tvalues,
            "pvalue": fit.pvalues,
            "contribution": contribution,
        }
    )
    return FactorFit(table, fit.r2, int(keep.sum()), lags, float(y[keep].mean() * TRADING_DAYS))


@dataclass(frozen=True)
class OLSFit:
    """An OLS fit with Newey-West standard errors: params, tvalues and two-sided normal
    pvalues (one per column of the design), and the R^2 (centred)."""

    params: np.ndarray
    tvalues: np.ndarray
    pvalues: np.ndarray
    r2: float


def newey_west_ols(y: np.ndarray, design: np.ndarray, lags: int) -> OLSFit:
    """OLS of ``y`` (n,) on ``design`` (n, k; the caller adds the intercept column) with
    the Newey-West covariance: (X'X)^-1 S (X'X)^-1, S = sum over lags l = 0 .. ``lags`` of
    Bartlett weight 1 - l / (lags + 1) times the score autocovariances (both sides).

    A coefficient with no standard error (a perfect fit) has a NaN t-stat, a constant
    ``y`` a NaN R^2, and values that overflow (an implausible price kept in the archive
    gives returns near 1e300) give NaN figures, not warnings.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        params, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ params
        scores = design * resid[:, None]
        s = scores.T @ scores
        for lag in range(1, lags + 1):
            gamma = scores[lag:].T @ scores[:-lag]
            s += (1 - lag / (lags + 1)) * (gamma + gamma.T)
        bread = np.linalg.pinv(design.T @ design)
        se = np.sqrt(np.maximum(np.diag(bread @ s @ bread), 0.0))
        tvalues = np.divide(params, se, out=np.full_like(params, np.nan), where=se > 0)
        centred = float(np.sum((y - y.mean()) ** 2))
        explained = 1 - float(resid @ resid) / centred if centred > 0 else math.nan
    pvalues = np.array([math.erfc(abs(t) / math.sqrt(2)) for t in tvalues])  # NaN stays NaN
    return OLSFit(params, tvalues, pvalues, explained)
