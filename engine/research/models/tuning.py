"""Inner, time-ordered validation of the linear penalty, from sufficient statistics.

At rebalance p with training periods [first, p], the last ``validation`` periods are
held out; the inner model is trained on periods [first, p - validation - gap], where
``gap`` periods keep the inner training labels from overlapping the held-out rows
(the same purge as the outer loop, one level down). Each candidate penalty is scored
by its mean squared error on the held-out periods, computed from their sums
(y'y - 2 w'X'y + w'X'Xw ...), so tuning never touches the rows either. Only rows the
outer model may train on are used: tuning cannot see the future of rebalance p.

Too few periods: while a rebalance's window is shorter than ``validation + gap`` periods
plus one to train on (or either part has too few rows, or, for the lasso, the inner rows
do not determine every coefficient), it is not tuned and keeps the fixed penalty.
``--validation-periods`` longer than the whole history therefore means every rebalance
uses the fixed penalty; the walk-forward reports how many were tuned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.research.models.linear import LinearFit, Moments, PeriodStats, fit_linear
from engine.schema import ModelName

# Candidate penalties. Ridge's are per training row (alpha = g * n, sum-of-squares units),
# so the same grid means the same shrinkage whatever the window length; elastic net's
# alpha is already per row (scikit-learn's objective divides the loss by n).
RIDGE_GRID_PER_ROW = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
ENET_GRID = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)


@dataclass(frozen=True)
class InnerSplit:
    """Held-out periods and the purge gap of the inner validation.

    Attributes
    ----------
    validation : number of trailing training periods held out.
    gap : periods dropped between inner training and held-out periods (>= 0).
    """

    validation: int
    gap: int


def candidate_alphas(model: ModelName, n_rows: float) -> tuple[float, ...]:
    """The penalty grid of ``model`` for a training set of ``n_rows`` rows."""
    if model is ModelName.RIDGE:
        return tuple(g * n_rows for g in RIDGE_GRID_PER_ROW)
    return ENET_GRID


def _lasso_undetermined(inner: Moments, model: ModelName, l1_ratio: float) -> bool:
    """True if a pure-l1 fit on ``inner`` is not unique (rank-deficient X'X, e.g. few
    symbols): at the grid's small penalties it has no exact optimum to compare."""
    pure_l1 = model is ModelName.LASSO or (model is ModelName.ELASTICNET and l1_ratio == 1)
    return pure_l1 and np.linalg.matrix_rank(inner.centred()[0]) < len(inner.sx)


def tuned_alpha(
    stats: PeriodStats,
    first: int,
    last: int,
    model: ModelName,
    l1_ratio: float,
    split: InnerSplit,
    min_rows: int,
    warm: dict[int, np.ndarray] | None = None,
) -> float | None:
    """The penalty with the lowest held-out MSE at a rebalance training on [first, last];
    None (keep the fixed penalty) when the window has no period left for inner training
    before the held-out ones, or either part has fewer than ``min_rows`` rows.

    ``warm`` (grid position -> coefficients), if given, warm-starts each candidate from
    its solution at the previous rebalance and is updated in place; it saves work only.
    """
    held_first = last - split.validation + 1
    inner_last = held_first - 1 - split.gap
    if inner_last < first:
        return None
    held, inner = stats.window(held_first, last), stats.window(first, inner_last)
    if inner.n < min_rows or held.n < min_rows or _lasso_undetermined(inner, model, l1_ratio):
        return None
    grid = candidate_alphas(model, inner.n)
    warm = {} if warm is None else warm
    errors = []
    for i, alpha in enumerate(grid):
        try:
            fit: LinearFit = fit_linear(inner, model, alpha, l1_ratio, warm.get(i))
        except ArithmeticError:  # no exact optimum at this penalty: not a candidate
            errors.append(np.inf)
            continue
        warm[i] = fit.coef
        with np.errstate(over="ignore", invalid="ignore"):  # sums that overflowed: inf - inf
            errors.append(held.sse(fit.coef, fit.intercept))
    scored = np.asarray(errors)
    if not np.isfinite(scored).any():  # labels beyond a float's range: nothing to compare
        return None
    best = int(np.argmin(np.where(np.isfinite(scored), scored, np.inf)))
    if model is ModelName.RIDGE:  # re-express per training row of the outer window
        return RIDGE_GRID_PER_ROW[best] * stats.window(first, last).n
    return grid[best]
