"""Prediction and portfolio metrics. Pure functions of arrays and frames.

Conventions: daily simple returns; 252 trading days a year; risk-free rate 0;
annualised figures use geometric compounding (CAGR) or sqrt(252) scaling (volatility,
Sharpe, tracking error). NaN inputs are dropped; a metric that cannot be computed is
NaN. Sharpe-ratio statistics (t-stats, probabilistic and deflated Sharpe) use the
per-day Sharpe ratio with the skewness/kurtosis correction of Mertens (2002) and the
deflation of Bailey and Lopez de Prado (2014).

Returns of implausible prices (an Adj Close of 1e-300 one day: ``archive.quality`` warns
of them) take sums and squares beyond a float's range: such a metric is inf or NaN, as
IEEE arithmetic has it, and numpy's warnings about it are off (``_IEEE``), since the
value, not a warning on stderr, is the answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import polars as pl

from engine.schema import DATE, SCORE

TRADING_DAYS = 252
_ROUNDING = 1e-12  # relative difference of two returns that is rounding, not a difference
MIN_CROSS_SECTION = 3  # scored, labelled names a date needs to count in IC and hit rate
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
_IEEE = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}  # inf / NaN, no warning


# --- prediction -----------------------------------------------------------------------
def rank_ic_by_label(predictions: pl.DataFrame, labels: Sequence[str]) -> dict[str, pl.DataFrame]:
    """label -> its per-date Spearman rank correlation with the score (date, ic, n), for
    each of ``labels``, from one pass over the dates.

    Only dates with at least ``MIN_CROSS_SECTION`` scored, labelled rows count (a NaN or
    null label counts as none); a date whose scores are all equal has no IC (NaN) and is
    dropped.
    """
    scored = pl.col(SCORE).is_not_null() & pl.col(SCORE).is_not_nan()
    per_label = []
    for i, label in enumerate(labels):
        valid = scored & pl.col(label).is_not_null() & pl.col(label).is_not_nan()
        score, value = pl.col(SCORE).filter(valid), pl.col(label).filter(valid)
        per_label += [
            pl.corr(score, value, method="spearman").alias(f"ic{i}"),
            valid.sum().alias(f"n{i}"),
        ]
    by_date = predictions.group_by(DATE).agg(per_label).sort(DATE)
    kept = (
        (pl.col("n") >= MIN_CROSS_SECTION) & pl.col("ic").is_not_nan() & pl.col("ic").is_not_null()
    )
    return {
        label: by_date.select(
            DATE, pl.col(f"ic{i}").alias("ic"), pl.col(f"n{i}").alias("n")
        ).filter(kept)
        for i, label in enumerate(labels)
    }


@np.errstate(**_IEEE)
def ic_summary(ic: np.ndarray, overlap: float = 1.0) -> dict[str, float]:
    """Mean, std, ICIR (mean / std), t-stat (mean / (std / sqrt(n))), the share of periods
    with a positive IC, and the t-stat with overlapping labels allowed for.

    The plain t-stat assumes independent periods. When the label horizon spans
    ``overlap`` > 1 rebalance periods (a 21-day label with weekly rebalances: ~4.2),
    consecutive ICs share most of their returns; ``ic_tstat_overlap_adj`` divides the
    t-stat by sqrt(overlap), i.e. counts n / overlap independent periods.
    """
    ic = ic[~np.isnan(ic)]
    out = {"ic_mean": float(np.mean(ic)) if ic.size else math.nan, "ic_periods": float(ic.size)}
    out["ic_positive_share"] = float((ic > 0).mean()) if ic.size else math.nan
    std = float(ic.std(ddof=1)) if ic.size > 1 else math.nan
    out["ic_std"] = std
    out["icir"] = out["ic_mean"] / std if std > 0 else math.nan
    out["ic_tstat"] = out["icir"] * math.sqrt(ic.size) if std > 0 else math.nan
    out["ic_tstat_overlap_adj"] = out["ic_tstat"] / math.sqrt(max(overlap, 1.0))
    return out


def hit_rate(predictions: pl.DataFrame, label: str) -> float:
    """Share of scored rows on the right side of their date's median: the score above
    the date's median score exactly when the label is above the date's median label.
    0.5 is chance. Only dates with ``MIN_CROSS_SECTION`` scored, labelled rows count (with
    one name a date's median is that name: always "right"); none gives NaN."""
    valid = predictions.filter(pl.col(SCORE).is_not_nan() & pl.col(label).is_not_null())
    valid = valid.filter(pl.len().over(DATE) >= MIN_CROSS_SECTION)
    if valid.height == 0:
        return math.nan
    side = [(pl.col(c) > pl.col(c).median().over(DATE)) for c in (SCORE, label)]
    return float(valid.select((side[0] == side[1]).mean()).item())


@np.errstate(**_IEEE)
def r2_oos(y: np.ndarray, pred: np.ndarray) -> float:
    """Pooled out-of-sample R^2 = 1 - SSE / SST, SST around the mean of the test labels
    (the scikit-learn convention). Near 0 or negative is normal for stock returns."""
    mask = ~(np.isnan(y) | np.isnan(pred))
    y, pred = y[mask], pred[mask]
    sst = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    return 1.0 - float(((y - pred) ** 2).sum()) / sst if 0 < sst < math.inf else math.nan


# --- returns --------------------------------------------------------------------------
def _clean(returns: np.ndarray) -> np.ndarray:
    return returns[~np.isnan(returns)]


@np.errstate(**_IEEE)
def total_return(returns: np.ndarray) -> float:
    return float(np.prod(1.0 + _clean(returns)) - 1.0)


@np.errstate(**_IEEE)
def cagr(returns: np.ndarray) -> float:
    """Compound annual growth rate of daily simple returns."""
    r = _clean(returns)
    if r.size == 0:
        return math.nan
    growth = np.prod(1.0 + r)
    return float(growth ** (TRADING_DAYS / r.size) - 1.0) if growth > 0 else -1.0


@np.errstate(**_IEEE)
def volatility(returns: np.ndarray) -> float:
    """Annualised standard deviation of daily returns."""
    r = _clean(returns)
    return float(r.std(ddof=1) * math.sqrt(TRADING_DAYS)) if r.size > 1 else math.nan


@np.errstate(**_IEEE)
def sharpe(returns: np.ndarray) -> float:
    """Annualised Sharpe ratio, risk-free rate 0: mean / std * sqrt(252)."""
    r = _clean(returns)
    if r.size < 2 or r.std(ddof=1) == 0:
        return math.nan
    return float(r.mean() / r.std(ddof=1) * math.sqrt(TRADING_DAYS))


@np.errstate(**_IEEE)
def sortino(returns: np.ndarray) -> float:
    """Annualised Sortino ratio: mean / downside deviation * sqrt(252), where the downside
    deviation is the root mean square of min(r, 0) over all days (target 0)."""
    r = _clean(returns)
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) if r.size else 0.0
    return float(r.mean() / downside * math.sqrt(TRADING_DAYS)) if downside > 0 else math.nan


@np.errstate(**_IEEE)
def drawdown(returns: np.ndarray) -> np.ndarray:
    """Equity / running peak - 1 each day (<= 0); NaN returns count as 0."""
    equity = np.cumprod(1.0 + np.nan_to_num(returns))
    return equity / np.maximum.accumulate(np.r_[1.0, equity])[1:] - 1.0


@np.errstate(**_IEEE)
def max_drawdown(returns: np.ndarray) -> float:
    """Largest peak-to-trough fall of the equity curve, as a negative fraction."""
    return float(drawdown(returns).min()) if len(returns) else math.nan


@np.errstate(**_IEEE)
def calmar(returns: np.ndarray) -> float:
    """CAGR / |max drawdown|."""
    mdd = max_drawdown(returns)
    return cagr(returns) / abs(mdd) if mdd < 0 else math.nan


@np.errstate(**_IEEE)
def var_cvar(returns: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Historical one-day value at risk and conditional VaR (expected shortfall) at
    ``level``, as positive loss fractions."""
    r = _clean(returns)
    if r.size == 0:
        return math.nan, math.nan
    q = float(np.quantile(r, 1.0 - level))
    return -q, -float(r[r <= q].mean())


@np.errstate(**_IEEE)
def moments(returns: np.ndarray) -> tuple[float, float, float, int]:
    """Per-day Sharpe ratio, skewness, (non-excess) kurtosis and count of daily returns."""
    r = _clean(returns)
    if r.size < 3 or r.std() == 0:
        return math.nan, math.nan, math.nan, int(r.size)
    z = (r - r.mean()) / r.std()
    return float(r.mean() / r.std(ddof=1)), float(np.mean(z**3)), float(np.mean(z**4)), int(r.size)


@np.errstate(**_IEEE)
def sharpe_tstat(returns: np.ndarray) -> float:
    """t-statistic of a per-day Sharpe ratio against 0, with the standard error of Mertens
    (2002): sqrt((1 - skew SR + (kurt - 1) / 4 SR^2) / (n - 1))."""
    sr, skew, kurt, n = moments(returns)
    if not math.isfinite(sr):
        return math.nan
    var = (1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr) / (n - 1)
    return sr / math.sqrt(var) if var > 0 else math.nan


@np.errstate(**_IEEE)
def probabilistic_sharpe(returns: np.ndarray, benchmark_sr: float = 0.0) -> float:
    """P(true per-day Sharpe > ``benchmark_sr``) given the sample (Bailey and Lopez de Prado)."""
    sr, skew, kurt, n = moments(returns)
    if not math.isfinite(sr):
        return math.nan
    var = (1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr) / (n - 1)
    return _NORMAL.cdf((sr - benchmark_sr) / math.sqrt(var)) if var > 0 else math.nan


@np.errstate(**_IEEE)
def expected_max_sharpe(trial_srs: np.ndarray) -> float:
    """Expected maximum per-day Sharpe ratio of ``len(trial_srs)`` unskilled trials whose
    Sharpe ratios have the sample variance of ``trial_srs`` (0 for a single trial)."""
    srs = trial_srs[np.isfinite(trial_srs)]
    if srs.size < 2:
        return 0.0
    n = srs.size
    spread = (1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n) + EULER_GAMMA * _NORMAL.inv_cdf(
        1 - 1 / (n * math.e)
    )
    return float(np.std(srs, ddof=1) * spread)


def deflated_sharpe(returns: np.ndarray, trial_srs: np.ndarray) -> float:
    """Deflated Sharpe ratio: the probabilistic Sharpe ratio against the best Sharpe that
    ``len(trial_srs)`` unskilled trials would be expected to reach by chance."""
    return probabilistic_sharpe(returns, expected_max_sharpe(np.asarray(trial_srs, float)))


# --- relative to a benchmark ----------------------------------------------------------
@np.errstate(**_IEEE)
def relative(returns: np.ndarray, benchmark: np.ndarray, suffix: str) -> dict[str, float]:
    """Against one benchmark, on the days both exist: excess CAGR, CAPM alpha (annualised)
    and beta, tracking error, information ratio, and the t-stat and two-sided p-value of
    the active return's Sharpe ratio. Keys end in ``suffix`` (e.g. ``_vs_index``).

    A day's active return within rounding of 0 is 0: a portfolio that is its benchmark
    (one symbol against its equal-weight universe) has no active risk, and no t-stat.
    """
    both = ~(np.isnan(returns) | np.isnan(benchmark))
    r, b = returns[both], benchmark[both]
    active = r - b
    active[np.abs(active) <= _ROUNDING * np.maximum(np.abs(r), np.abs(b))] = 0.0
    out = {"excess_cagr": cagr(r) - cagr(b), "days": float(both.sum())}
    if r.size > 2 and b.var() > 0:
        out["beta"] = float(np.cov(r, b, ddof=1)[0, 1] / b.var(ddof=1))
        out["alpha"] = float((r.mean() - out["beta"] * b.mean()) * TRADING_DAYS)
    else:
        out["beta"] = out["alpha"] = math.nan
    out["tracking_error"] = volatility(active)
    out["information_ratio"] = sharpe(active)
    t = sharpe_tstat(active)
    out["excess_tstat"] = t
    out["excess_pvalue"] = 2 * (1 - _NORMAL.cdf(abs(t))) if math.isfinite(t) else math.nan
    out["excess_psr"] = probabilistic_sharpe(active)
    return {f"{key}{suffix}": value for key, value in out.items()}


@np.errstate(**_IEEE)
def portfolio_summary(returns: np.ndarray, prefix: str = "", full: bool = True) -> dict[str, float]:
    """CAGR, total return, volatility, Sharpe and max drawdown, plus (``full``) Sortino,
    Calmar, 95 % VaR and CVaR; keys prefixed."""
    out = {
        f"{prefix}cagr": cagr(returns),
        f"{prefix}total_return": total_return(returns),
        f"{prefix}volatility": volatility(returns),
        f"{prefix}sharpe": sharpe(returns),
        f"{prefix}max_drawdown": max_drawdown(returns),
    }
    if full:
        var, cvar = var_cvar(returns)
        out |= {
            f"{prefix}sortino": sortino(returns),
            f"{prefix}calmar": calmar(returns),
            f"{prefix}var_95": var,
            f"{prefix}cvar_95": cvar,
        }
    return out


# --- attribution ----------------------------------------------------------------------
@np.errstate(**_IEEE)
def sector_attribution(
    weights: np.ndarray,
    period_returns: np.ndarray,
    sector_code: np.ndarray,
    sector_names: tuple[str, ...],
) -> pl.DataFrame:
    """Brinson-Fachler sector attribution of the excess return over the equal-weight
    universe, summed arithmetically over holding periods, gross of costs.

    Per period: allocation_s = (wP_s - wB_s) (rB_s - rB), selection_s = wP_s (rP_s - rB_s)
    (selection includes interaction). The benchmark holds every name with a return in the
    period equally, buy-and-hold within the period; cash (weights summing below 1) is a
    sector of its own with return 0. allocation + selection over all sectors equals the
    period's excess return rP - rB exactly.

    Parameters
    ----------
    weights : (periods x symbols) weights held from each trade day.
    period_returns : (periods x symbols) compounded simple return to the next trade day.
    sector_code : (symbols,) index into ``sector_names``.
    """
    names = (*sector_names, "Cash")
    n_sec = len(names)
    rows = {"allocation": np.zeros(n_sec), "selection": np.zeros(n_sec), "w_port": np.zeros(n_sec), "w_bench": np.zeros(n_sec)}  # fmt: skip
    for w, ret in zip(weights, period_returns, strict=True):
        live = ~np.isnan(ret)
        if not live.any():
            continue
        r = np.where(live, ret, 0.0)
        wp = np.r_[np.bincount(sector_code, w, n_sec - 1), max(1.0 - w.sum(), 0.0)]
        wb = np.r_[np.bincount(sector_code, live, n_sec - 1), 0.0] / live.sum()
        rp = np.r_[np.bincount(sector_code, w * r, n_sec - 1), 0.0]
        rb = np.r_[np.bincount(sector_code, r * live, n_sec - 1), 0.0] / live.sum()
        rp_s = np.divide(rp, wp, out=np.zeros(n_sec), where=wp > 0)
        rb_s = np.divide(rb, wb, out=np.zeros(n_sec), where=wb > 0)
        rows["allocation"] += (wp - wb) * (rb_s - rb.sum())
        rows["selection"] += wp * (rp_s - rb_s)
        rows["w_port"] += wp / len(weights)
        rows["w_bench"] += wb / len(weights)
    frame = pl.DataFrame({"sector": list(names), **rows})
    frame = frame.with_columns((pl.col("allocation") + pl.col("selection")).alias("total"))
    return frame.filter((pl.col("w_port") > 0) | (pl.col("w_bench") > 0))
