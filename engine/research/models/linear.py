"""Linear models from sufficient statistics: ridge, lasso and elastic net.

Rows are grouped by the period in which their label becomes known (see ``splits``);
each period contributes its sums X'X, X'y, y'y, sum(X), sum(y) and n once. A training
window is a contiguous run of periods, so its statistics are a difference of
cumulative sums and each refit is a k x k problem (k features) instead of a pass over
every training row.

All three models use scikit-learn's conventions with ``fit_intercept=True``: X and y
are centred on the training means, the penalty never touches the intercept, and

* ridge minimises ||yc - Xc w||^2 + alpha ||w||^2 (alpha in sum-of-squares units);
* elastic net minimises 1/(2n) ||yc - Xc w||^2 + alpha l1 ||w||_1
  + alpha (1 - l1) / 2 ||w||^2 (alpha per row; lasso is l1 = 1).

Why a hand-written coordinate descent: scikit-learn's Gram route (``precompute=`` /
``Xy=``, ``enet_path``) still needs the full X to validate and centre, which is the
pass we avoid; its Cython solver on a Gram matrix is private. With k ~ 18 a small
numpy loop is cheap, and each solution is then *polished*: on the active set found by
coordinate descent the optimality conditions are linear, so we solve them exactly
and accept the result only if every KKT condition holds. The answer is therefore the
exact optimum, not an approximation with a tolerance, which is what lets the tests
demand agreement with a tightly converged scikit-learn refit to 1e-8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.schema import ModelName

# Default penalties. Features are ranked to [-0.5, 0.5] (variance 1/12) and the label is a
# raw 21-day return (sd ~ 0.1), so per-feature OLS slopes are ~1e-2 and x_j'r / n ~ 1e-3.
# An l1 penalty of 1e-4 per row then keeps the strong features and zeroes the weak ones;
# scikit-learn's default alpha=1.0 would zero every coefficient. Ridge's alpha is in
# sum-of-squares units (scikit-learn's convention), against X'X diagonals of ~1e5: 1.0 is
# effectively OLS, which 1e5+ rows for 18 features support well.
DEFAULT_ALPHA = {ModelName.RIDGE: 1.0, ModelName.LASSO: 1e-4, ModelName.ELASTICNET: 2e-4}
LINEAR_MODELS = frozenset(DEFAULT_ALPHA)
_KKT_SLACK = 1e-9  # relative slack on |gradient| <= l1 for inactive coordinates
_ROUNDING = 64 * np.finfo(np.float64).eps  # relative rounding error of a residual xy - G w


@dataclass(frozen=True)
class PeriodStats:
    """Per-period sufficient statistics, cumulated along the period axis (index 0 = empty).

    Attributes
    ----------
    xtx : (P + 1, k, k) cumulative X'X.
    xty : (P + 1, k) cumulative X'y.
    yty, sy, n : (P + 1,) cumulative y'y, sum of y and row count.
    sx : (P + 1, k) cumulative column sums of X.
    """

    xtx: np.ndarray
    xty: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    yty: np.ndarray
    n: np.ndarray

    def window(self, first: int, last: int) -> Moments:
        """Sums over periods first..last inclusive (empty when last < first).

        Raises ValueError for a period outside the sums: a negative index would silently
        read the cumulative sums from their end.
        """
        a, b = first, max(last + 1, first)
        if a < 0 or b >= len(self.n):
            raise ValueError(f"periods {first}..{last} outside the sums' 0..{len(self.n) - 2}")
        with np.errstate(invalid="ignore"):  # sums that overflowed to inf: inf - inf is NaN
            return Moments(
                xtx=self.xtx[b] - self.xtx[a],
                xty=self.xty[b] - self.xty[a],
                sx=self.sx[b] - self.sx[a],
                sy=float(self.sy[b] - self.sy[a]),
                yty=float(self.yty[b] - self.yty[a]),
                n=float(self.n[b] - self.n[a]),
            )


@dataclass(frozen=True)
class Moments:
    """Raw sums of one set of rows: X'X, X'y, sum X, sum y, y'y and n."""

    xtx: np.ndarray
    xty: np.ndarray
    sx: np.ndarray
    sy: float
    yty: float
    n: float

    def centred(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(Xc'Xc, Xc'yc, mean x, mean y) around this set's own means."""
        mx, my = self.sx / self.n, self.sy / self.n
        return self.xtx - self.n * np.outer(mx, mx), self.xty - self.n * mx * my, mx, my

    def sse(self, coef: np.ndarray, intercept: float) -> float:
        """Sum of squared errors of ``X @ coef + intercept`` on these rows, from the sums."""
        w, b = coef, intercept
        fit = w @ self.xtx @ w + 2 * b * (w @ self.sx) + self.n * b * b
        return float(self.yty - 2 * (w @ self.xty) - 2 * b * self.sy + fit)


def period_stats(X: np.ndarray, y: np.ndarray, period: np.ndarray, n_periods: int) -> PeriodStats:
    """Cumulative sums by ``period`` (rows with ``period >= n_periods`` are ignored).

    ``X`` may be float32; each period's block is promoted to float64 before its products,
    so the sums are exact to float64 rounding of the stored values. BLAS runs on one
    thread here: on blocks this small, handing work to other threads costs more than it.
    A sum beyond a float's range (labels of implausible prices: ``archive.quality``) is
    inf, as IEEE arithmetic has it, without a numpy warning.
    """
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    with threadpool_limits(limits=1, user_api="blas"), np.errstate(over="ignore", invalid="ignore"):
        return _period_stats(X, y, period, n_periods)


def _period_stats(X: np.ndarray, y: np.ndarray, period: np.ndarray, n_periods: int) -> PeriodStats:
    k = X.shape[1]
    # Rows sorted by (date, symbol) usually have a non-decreasing period: each period is then
    # a contiguous block, read as a slice (no argsort, no fancy-index gather of all rows).
    contiguous = bool(np.all(period[1:] >= period[:-1]))
    order = None if contiguous else np.argsort(period, kind="stable")
    bounds = np.searchsorted(
        period if order is None else period[order], np.arange(n_periods + 1), side="left"
    )
    xtx, xty, sx = (
        np.zeros((n_periods + 1, k, k)),
        np.zeros((n_periods + 1, k)),
        np.zeros((n_periods + 1, k)),
    )
    sy, yty, n = np.zeros(n_periods + 1), np.zeros(n_periods + 1), np.zeros(n_periods + 1)
    for p in range(n_periods):
        lo, hi = int(bounds[p]), int(bounds[p + 1])
        if hi == lo:
            continue
        rows = slice(lo, hi) if order is None else order[lo:hi]
        # C-ordered float64 blocks either way, so the products (and their rounding) are the
        # same whichever way the rows were read.
        Xp = np.ascontiguousarray(X[rows], dtype=np.float64)
        yp = np.ascontiguousarray(y[rows], dtype=np.float64)
        xtx[p + 1], xty[p + 1], sx[p + 1] = Xp.T @ Xp, Xp.T @ yp, Xp.sum(axis=0)
        sy[p + 1], yty[p + 1], n[p + 1] = yp.sum(), yp @ yp, hi - lo
    return PeriodStats(*(np.cumsum(a, axis=0) for a in (xtx, xty, sx, sy, yty, n)))


@dataclass(frozen=True)
class LinearFit:
    """A fitted linear scorer: score = X @ coef + intercept.

    Attributes
    ----------
    coef, intercept : the fitted parameters (label units per feature unit).
    model : which linear model produced it.
    alpha, l1_ratio : the penalty used (``l1_ratio`` is 0 for ridge, 1 for lasso).
    n_train : number of training rows.
    """

    coef: np.ndarray
    intercept: float
    model: ModelName = ModelName.RIDGE
    alpha: float = 1.0
    l1_ratio: float = 0.0
    n_train: int = 0

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef + self.intercept


def ridge_from_moments(m: Moments, alpha: float) -> LinearFit:
    """Ridge with intercept: centre, then solve (Xc'Xc + alpha I) w = Xc'yc."""
    gram, xy, mx, my = m.centred()
    coef = np.linalg.solve(gram + alpha * np.eye(len(mx)), xy)
    return LinearFit(coef, float(my - mx @ coef), ModelName.RIDGE, alpha, 0.0, int(m.n))


def enet_from_moments(
    m: Moments,
    alpha: float,
    l1_ratio: float,
    start: np.ndarray | None = None,
    model: ModelName = ModelName.ELASTICNET,
) -> LinearFit:
    """Elastic net (lasso when ``l1_ratio`` is 1) with intercept, from the sums.

    ``start`` warm-starts the coordinate descent (e.g. the previous rebalance's
    coefficients); it changes the work done, never the answer.
    """
    gram, xy, mx, my = m.centred()
    l1, l2 = alpha * l1_ratio * m.n, alpha * (1.0 - l1_ratio) * m.n
    coef = enet_gram(gram, xy, l1, l2, start)
    return LinearFit(coef, float(my - mx @ coef), model, alpha, l1_ratio, int(m.n))


def enet_gram(
    gram: np.ndarray,
    xy: np.ndarray,
    l1: float,
    l2: float,
    start: np.ndarray | None = None,
    max_sweeps: int = 100_000,
) -> np.ndarray:
    """argmin_w 1/2 w'Gw - w'xy + l1 ||w||_1 + l2/2 ||w||^2, exactly.

    Cyclic coordinate descent finds the active set and signs; :func:`polish` then solves
    the optimality conditions on that set exactly and checks them all. Stops at the
    first polished solution that passes (usually within a few sweeps from a warm start).
    """
    k = len(xy)
    w = np.zeros(k) if start is None else np.array(start, dtype=np.float64)
    grad = xy - gram @ w
    denom = np.diag(gram) + l2
    for _ in range(max_sweeps):
        support_before = np.sign(w)
        for j in range(k):
            if denom[j] <= 0:
                continue
            rho = grad[j] + gram[j, j] * w[j]
            new = math.copysign(max(abs(rho) - l1, 0.0), rho) / denom[j]
            if new != w[j]:
                grad -= gram[:, j] * (new - w[j])
                w[j] = new
        if np.array_equal(np.sign(w), support_before):
            exact = polish(gram, xy, l1, l2, w)
            if exact is not None:
                return exact
    raise ArithmeticError("elastic net coordinate descent did not converge")


def polish(
    gram: np.ndarray, xy: np.ndarray, l1: float, l2: float, w: np.ndarray
) -> np.ndarray | None:
    """The exact optimum on the active set and signs of ``w``, or None if it is not optimal.

    With active set A and signs s, optimality reads (G_AA + l2 I) w_A = xy_A - l1 s; it is
    the global optimum iff sign(w_A) == s and |xy_j - G_jA w_A| <= l1 for every j not in A.
    Where G_AA is singular (collinear features: Alpha158's SUMP and SUMN rank as mirror
    images) the system, if consistent, has many solutions: the least-norm one is taken, and
    it is an optimum (one of many, with the same objective) when it passes the same checks.
    """
    active = np.flatnonzero(w)
    signs = np.sign(w[active])
    out = np.zeros_like(w)
    if active.size:
        sub = gram[np.ix_(active, active)] + l2 * np.eye(active.size)
        rhs = xy[active] - l1 * signs
        out[active] = np.linalg.lstsq(sub, rhs, rcond=None)[0]
        scale = np.abs(sub) @ np.abs(out[active]) + np.abs(rhs)
        if np.any(np.abs(sub @ out[active] - rhs) > _ROUNDING * 1e4 * scale + 1e-300):
            return None  # inconsistent: no solution on this active set
        if not np.array_equal(np.sign(out[active]), signs):
            return None
    slack = np.abs(xy - gram @ out)
    # The residual's own rounding error, which dominates l1 when the sums are huge (labels
    # of implausible prices) and is negligible otherwise.
    rounding = _ROUNDING * (np.abs(xy) + np.abs(gram) @ np.abs(out))
    inactive = np.ones(len(w), dtype=bool)
    inactive[active] = False
    if np.any(slack[inactive] > l1 * (1 + _KKT_SLACK) + rounding[inactive] + 1e-300):
        return None
    return out


def fit_linear(
    m: Moments, model: ModelName, alpha: float, l1_ratio: float, start: np.ndarray | None
) -> LinearFit:
    """Dispatch to the solver of ``model`` (lasso is elastic net with l1_ratio = 1)."""
    if model is ModelName.RIDGE:
        return ridge_from_moments(m, alpha)
    ratio = 1.0 if model is ModelName.LASSO else l1_ratio
    return enet_from_moments(m, alpha, ratio, start, model)


def to_sklearn_linear(fit: LinearFit) -> object:
    """The fitted scorer as the matching scikit-learn estimator (fitted attributes set)."""
    from sklearn.linear_model import ElasticNet, Lasso, Ridge  # lazily: a slow import

    if fit.model is ModelName.RIDGE:
        est = Ridge(alpha=fit.alpha)
    elif fit.model is ModelName.LASSO:
        est = Lasso(alpha=fit.alpha)
    else:
        est = ElasticNet(alpha=fit.alpha, l1_ratio=fit.l1_ratio)
    est.coef_ = fit.coef.copy()
    est.intercept_ = fit.intercept
    est.n_features_in_ = len(fit.coef)
    return est
