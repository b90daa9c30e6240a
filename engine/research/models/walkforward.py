"""Purged walk-forward: at each active rebalance, fit on what was known, score the date.

Vocabulary (see ``splits``): ``available[i]`` is the first rebalance at which row i's
label is known; ``predict_at[i]`` is the rebalance whose date row i carries (-1 if
none). The model used at rebalance p trains only on rows with
``plan.first[p] <= available <= p`` and scores the rows with ``predict_at == p``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.research.models.errors import ModelError
from engine.research.models.linear import (
    LinearFit,
    Moments,
    PeriodStats,
    fit_linear,
    period_stats,
)
from engine.research.models.tuning import InnerSplit, tuned_alpha
from engine.research.splits import Schedule
from engine.schema import ModelName

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WalkForwardResult:
    """Out-of-sample scores and the models behind them.

    Attributes
    ----------
    scores : one score per row; NaN for rows not scored (not a rebalance date, or no
        model yet).
    fits : rebalance index -> scorer fitted at that rebalance.
    info : model diagnostics for the metrics (refits, training rows, chosen penalty).
    """

    scores: np.ndarray
    fits: dict[int, Any]
    info: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> Any:
        """The scorer in force at the last rebalance (None for baselines)."""
        return self.fits[max(self.fits)] if self.fits else None


@dataclass(frozen=True)
class LinearSpec:
    """Which linear model, its fixed penalty, and optionally an inner validation split
    that chooses the penalty at every rebalance instead."""

    model: ModelName
    alpha: float
    l1_ratio: float = 0.5
    tuning: InnerSplit | None = None


def rows_by_period(period: np.ndarray, n_periods: int) -> list[np.ndarray]:
    """Row indices grouped by ``period`` value 0..n_periods-1 (other values dropped), each
    group in ascending order."""
    rows = np.flatnonzero((period >= 0) & (period < n_periods))
    values = period[rows]
    if np.any(values[1:] < values[:-1]):  # rows not in period order (not sorted by date)
        order = np.argsort(values, kind="stable")
        rows, values = rows[order], values[order]
    bounds = np.searchsorted(values, np.arange(n_periods + 1), side="left")
    return [rows[bounds[p] : bounds[p + 1]] for p in range(n_periods)]


def training_mask(available: np.ndarray, plan: Schedule, p: int) -> np.ndarray:
    """Rows the model used at rebalance p may train on: label known by p, inside the window."""
    return (available <= p) & (available >= plan.first[p])


def walk_forward_linear(
    X: np.ndarray,
    y: np.ndarray,
    available: np.ndarray,
    predict_at: np.ndarray,
    plan: Schedule,
    spec: LinearSpec,
    sums: Callable[..., PeriodStats] = period_stats,
) -> WalkForwardResult:
    """Purged walk-forward of a linear model from cumulated per-period sums.

    ``sums(X, y, available, n_periods)`` makes them (``period_stats`` on this machine; the
    same sums aggregated elsewhere, e.g. ``engine.spark.sums``, give the same fits); only
    the rows scored at a rebalance are read from ``X`` here.
    ``y`` must be finite wherever ``available < len(plan.rebalances)``. With
    ``spec.tuning``, a rebalance with too few periods to tune keeps ``spec.alpha``;
    ``info["tuned_rebalances"]`` counts those that were tuned.
    """
    n_periods = len(plan.rebalances)
    stats = sums(X, y, available, n_periods)
    targets = rows_by_period(predict_at, n_periods)
    scores = np.full(len(X), np.nan)
    fits: dict[int, LinearFit] = {}
    start, min_rows, warm, tuned = None, X.shape[1] + 2, {}, 0
    for p in np.flatnonzero(plan.active):
        first, rows = int(plan.first[p]), targets[p]
        moments: Moments = stats.window(first, int(p))
        if moments.n < min_rows or rows.size == 0:
            continue
        alpha = spec.alpha
        if spec.tuning is not None:
            chosen = tuned_alpha(
                stats, first, int(p), spec.model, spec.l1_ratio, spec.tuning, min_rows, warm
            )
            if chosen is not None:
                alpha, tuned = chosen, tuned + 1
        fit = _fit(moments, spec, alpha, start, plan.rebalances[p])
        start = fit.coef
        scores[rows] = fit.predict(X[rows].astype(np.float64, copy=False))
        fits[int(p)] = fit
    info = _linear_info(fits)
    if spec.tuning is not None:
        info["tuned_rebalances"] = float(tuned)
        _report_tuning(spec, len(fits), tuned)
    return WalkForwardResult(scores, fits, info)


def _fit(
    moments: Moments, spec: LinearSpec, alpha: float, start: np.ndarray | None, day: Any
) -> LinearFit:
    """``fit_linear``; a solver that finds no exact optimum (a lasso whose training rows do
    not determine every coefficient) is a one-line ``ModelError``, not a traceback."""
    try:
        return fit_linear(moments, spec.model, alpha, spec.l1_ratio, start)
    except ArithmeticError:
        raise ModelError(
            f"{spec.model.value} with alpha {alpha:g} has no unique solution at the rebalance "
            f"of {day}: its training rows do not determine every coefficient (a larger "
            "--alpha, more symbols or ridge would)"
        ) from None


def _report_tuning(spec: LinearSpec, fitted: int, tuned: int) -> None:
    """Say how many rebalances were tuned; warn when none was (the fixed penalty ran)."""
    split = spec.tuning
    if fitted and not tuned:
        log.warning(
            "penalty tuning holds out %d periods (+%d purge gap): no rebalance has that many "
            "training periods plus one, so every rebalance used the fixed penalty %g "
            "(use fewer --validation-periods)", split.validation, split.gap, spec.alpha
        )  # fmt: skip
    else:
        log.info("penalty tuned at %d of %d rebalances (the others: fixed %g)",
                 tuned, fitted, spec.alpha)  # fmt: skip


def _linear_info(fits: dict[int, LinearFit]) -> dict[str, float]:
    if not fits:
        return {"refits": 0.0}
    alphas = np.array([f.alpha for f in fits.values()])
    nonzero = np.array([np.count_nonzero(f.coef) for f in fits.values()])
    return {
        "refits": float(len(fits)),
        "alpha_median": float(np.median(alphas)),
        "nonzero_coef_mean": float(nonzero.mean()),
        "train_rows_last": float(fits[max(fits)].n_train),
    }


@dataclass(frozen=True)
class RefitPlan:
    """How a slow (tree) model walks forward.

    Attributes
    ----------
    refit_every : rebalances between refits; the model fitted at p serves p .. p+refit_every-1.
    train_dates : at most this many distinct training dates, drawn at random per refit.
    seed : seed of the date sampling (combined with the rebalance index).
    """

    refit_every: int
    train_dates: int
    seed: int


def sampled_training_rows(
    mask: np.ndarray, date_id: np.ndarray, n_dates: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of the rows in ``mask`` whose date is among ``n_dates`` dates drawn without
    replacement from the dates present in ``mask``; sorted."""
    present = np.flatnonzero(np.bincount(date_id[mask], minlength=int(date_id.max()) + 1))
    if present.size > n_dates:
        keep = np.zeros(int(date_id.max()) + 1, dtype=bool)
        keep[rng.choice(present, size=n_dates, replace=False)] = True
        mask = mask & keep[date_id]
    return np.flatnonzero(mask)


def walk_forward_refit(
    X: np.ndarray,
    y: np.ndarray,
    available: np.ndarray,
    predict_at: np.ndarray,
    date_id: np.ndarray,
    plan: Schedule,
    make_estimator: Callable[[], Any],
    refit: RefitPlan,
) -> WalkForwardResult:
    """Purged walk-forward of an estimator refitted every ``refit.refit_every`` rebalances
    on a sample of training dates. Between refits the last fitted model is reused, which
    is honest (it only knows less than it could)."""
    n_periods = len(plan.rebalances)
    targets = rows_by_period(predict_at, n_periods)
    scores = np.full(len(X), np.nan)
    fits: dict[int, Any] = {}
    active = np.flatnonzero(plan.active)
    train_rows = []
    for block in range(0, len(active), refit.refit_every):
        periods = active[block : block + refit.refit_every]
        p = int(periods[0])
        rng = np.random.default_rng([refit.seed, p])
        rows = sampled_training_rows(
            training_mask(available, plan, p), date_id, refit.train_dates, rng
        )
        if rows.size < X.shape[1] + 2:
            continue
        estimator = make_estimator().fit(X[rows], y[rows])
        fits[p] = estimator
        train_rows.append(rows.size)
        scored = np.concatenate([targets[q] for q in periods])
        if scored.size:
            scores[scored] = estimator.predict(X[scored])
    info = {"refits": float(len(fits))}
    if train_rows:
        info["train_rows_mean"] = float(np.mean(train_rows))
    return WalkForwardResult(scores, fits, info)
