"""Walk-forward models: sufficient statistics vs scikit-learn refits, the purge, refits."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import RunSpec
from engine.data.archive import load_archive
from engine.features.sets import feature_set
from engine.pipeline import Prepared, StageTimer, prepare
from engine.pipeline.frame import model_frame
from engine.research.models import (
    LinearFit,
    LinearSpec,
    Moments,
    RefitPlan,
    enet_from_moments,
    period_stats,
    to_sklearn,
    training_mask,
    walk_forward_linear,
    walk_forward_refit,
)
from engine.research.models.linear import enet_gram, polish
from engine.research.models.tuning import InnerSplit, tuned_alpha
from engine.research.splits import schedule
from engine.schema import ModelName, TrainWindow

PARITY = 1e-8  # required agreement of predictions with a refitted scikit-learn estimator


CONFIG = {"tracking.enabled": False, "paths.frame_cache": False,
          "walk_forward.min_train_periods": 6}  # fmt: skip


@pytest.fixture(scope="module")
def archive(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_archive(small_archive, tmp_path_factory.mktemp("models-cache"))


@pytest.fixture(scope="module")
def prepared(archive, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """Real normalised features and labels of the 40-symbol archive (monthly rebalances)."""
    config = RunSpec().replace(**CONFIG, **{"paths.output": tmp_path_factory.mktemp("models")})
    return prepare(archive, config, StageTimer())


def _sklearn(model: ModelName, alpha: float, l1_ratio: float):
    from sklearn.linear_model import ElasticNet, Lasso, Ridge

    tight = {"tol": 1e-11, "max_iter": 1_000_000}
    if model is ModelName.RIDGE:
        return Ridge(alpha=alpha)
    if model is ModelName.LASSO:
        return Lasso(alpha=alpha, **tight)
    return ElasticNet(alpha=alpha, l1_ratio=l1_ratio, **tight)


@pytest.mark.parametrize("window", [TrainWindow.EXPANDING, TrainWindow.ROLLING])
@pytest.mark.parametrize(
    ("model", "alpha"),
    [(ModelName.RIDGE, 10.0), (ModelName.LASSO, 1e-4), (ModelName.ELASTICNET, 2e-4)],
)
def test_walk_forward_equals_refitting_sklearn(prepared: Prepared, model, alpha, window):
    """At several rebalances, the sufficient-statistics prediction equals a from-scratch
    scikit-learn fit on exactly the purged training rows, to 1e-8. scikit-learn runs
    with tol=1e-11 so that its coordinate descent is converged well past 1e-8; ours is
    exact by construction (KKT-checked active-set solve)."""
    data = prepared.data
    plan = schedule(data.rebalances, window, 6, 12, int(data.available.min()))
    y = np.nan_to_num(data.y)
    spec = LinearSpec(model, alpha, 0.5)
    result = walk_forward_linear(data.X, y, data.available, data.predict_at, plan, spec)
    active = sorted(result.fits)
    assert len(active) > 20
    X64 = data.X.astype(np.float64)
    for p in (active[0], active[len(active) // 2], active[-8], active[-1]):
        train = training_mask(data.available, plan, p)
        est = _sklearn(model, alpha, 0.5).fit(X64[train], y[train])
        rows = np.flatnonzero(data.predict_at == p)
        np.testing.assert_allclose(result.scores[rows], est.predict(X64[rows]), rtol=0, atol=PARITY)
        np.testing.assert_allclose(result.fits[p].coef, est.coef_, rtol=0, atol=1e-8)


def test_rolling_window_drops_old_periods(prepared: Prepared):
    data = prepared.data
    plan = schedule(data.rebalances, TrainWindow.ROLLING, 6, 12, int(data.available.min()))
    for p in np.flatnonzero(plan.active):
        rows = training_mask(data.available, plan, p)
        assert data.available[rows].min() >= p - 11


def test_training_rows_only_have_labels_known_at_the_rebalance(archive, prepared: Prepared):
    """The purge, row by row: every row a model trains on at rebalance T has its label
    end date (the date of row t + h of its symbol) <= T, so no row dated T (the scored
    rows) or later is ever trained on at T."""
    data = prepared.data
    frame = model_frame(archive, RunSpec().replace(**CONFIG).features, feature_set("core"))
    assert len(frame) == len(data.y)
    scored = frame.select("date", "symbol")[data.scored]
    assert scored.equals(data.keys.select("date", "symbol"))
    ends = frame["label_end_21d"].to_numpy()
    dates = frame["date"].to_numpy()
    for p in np.flatnonzero(data.plan.active):
        rows = training_mask(data.available, data.plan, p)
        assert rows.any()
        assert (ends[rows] <= data.rebalances[p]).all()
        assert (dates[rows] < data.rebalances[p]).all()


def test_future_labels_cannot_move_past_scores(prepared: Prepared):
    """Point in time for the whole linear walk-forward (with inner tuning): rewriting
    every label not yet known at rebalance p leaves the scores at p unchanged."""
    data, y = prepared.data, np.nan_to_num(prepared.data.y)
    spec = LinearSpec(ModelName.LASSO, 1e-4, 1.0, InnerSplit(validation=3, gap=2))
    base = walk_forward_linear(data.X, y, data.available, data.predict_at, data.plan, spec)
    p = sorted(base.fits)[len(base.fits) // 2]
    future = data.available > p
    noisy = np.where(future, np.random.default_rng(0).normal(0, 1, len(y)), y)
    moved = walk_forward_linear(data.X, noisy, data.available, data.predict_at, data.plan, spec)
    rows = data.predict_at <= p
    np.testing.assert_array_equal(base.scores[rows], moved.scores[rows])
    assert not np.allclose(
        base.scores[data.predict_at > p + 1], moved.scores[data.predict_at > p + 1], equal_nan=True
    )


def test_tree_walk_forward_refits_on_schedule_and_respects_the_purge(prepared: Prepared):
    data, y = prepared.data, np.nan_to_num(prepared.data.y)
    seen: list[tuple[int, int]] = []

    class Mean:
        """A stand-in estimator that records how much it was trained on."""

        def fit(self, X, y):
            seen.append((len(X), len(np.unique(X[:, 0]))))
            self.mean_ = float(y.mean())
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    refit = RefitPlan(refit_every=4, train_dates=10, seed=3)
    result = walk_forward_refit(
        data.X, y, data.available, data.predict_at, data.date_id, data.plan, Mean, refit
    )
    active = np.flatnonzero(data.plan.active)
    assert sorted(result.fits) == [int(p) for p in active[::4]]
    scored = np.unique(data.predict_at[~np.isnan(result.scores)])
    assert set(scored) == set(active.tolist())
    # ~40 symbols x at most 10 dates per refit
    assert all(rows <= 10 * 40 for rows, _ in seen)
    again = walk_forward_refit(
        data.X, y, data.available, data.predict_at, data.date_id, data.plan, Mean, refit
    )
    np.testing.assert_array_equal(result.scores, again.scores)  # seeded


def test_tree_models_never_train_on_unknown_labels(prepared: Prepared):
    data, y = prepared.data, np.nan_to_num(prepared.data.y)
    trained_on: list[np.ndarray] = []

    class Spy:
        def fit(self, X, y):
            trained_on.append(y.copy())
            return self

        def predict(self, X):
            return np.zeros(len(X))

    marked = np.where(data.available >= len(data.rebalances), np.nan, y)  # never known
    plan = RefitPlan(refit_every=1, train_dates=10_000, seed=0)
    walk_forward_refit(data.X, np.nan_to_num(marked, nan=999.0), data.available,
                       data.predict_at, data.date_id, data.plan, Spy, plan)  # fmt: skip
    assert trained_on and all((t != 999.0).all() for t in trained_on)


def test_tuning_picks_a_grid_value_from_training_periods_only(prepared: Prepared):
    data, y = prepared.data, np.nan_to_num(prepared.data.y)
    stats = period_stats(data.X, y, data.available, len(data.rebalances))
    last = int(np.flatnonzero(data.plan.active)[-1])
    split = InnerSplit(validation=4, gap=2)
    alpha = tuned_alpha(stats, 0, last, ModelName.LASSO, 1.0, split, 20)
    assert alpha in (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
    assert tuned_alpha(stats, last - 3, last, ModelName.LASSO, 1.0, split, 20) is None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), l1=st.floats(1e-3, 50.0), l2=st.floats(0.0, 5.0))
def test_enet_gram_solution_satisfies_every_kkt_condition(seed: int, l1: float, l2: float):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(60, 8)) @ np.diag(rng.uniform(0.1, 3, 8))
    gram, xy = A.T @ A, A.T @ rng.normal(size=60) * 3
    w = enet_gram(gram, xy, l1, l2)
    grad = xy - gram @ w - l2 * w
    active = w != 0
    np.testing.assert_allclose(grad[active], l1 * np.sign(w[active]), atol=1e-9 * max(1, l1))
    assert (np.abs(grad[~active]) <= l1 * (1 + 1e-8)).all()
    assert polish(gram, xy, l1, l2, w) is not None


def test_enet_warm_start_changes_nothing_but_the_work():
    rng = np.random.default_rng(1)
    X = rng.uniform(-0.5, 0.5, (500, 6))
    y = X @ [0.02, -0.01, 0, 0, 0.005, 0] + rng.normal(0, 0.05, 500)
    m = Moments(X.T @ X, X.T @ y, X.sum(0), y.sum(), y @ y, 500.0)
    cold = enet_from_moments(m, 1e-4, 0.7)
    warm = enet_from_moments(m, 1e-4, 0.7, start=rng.normal(size=6))
    np.testing.assert_allclose(cold.coef, warm.coef, atol=1e-14)


@pytest.mark.parametrize("model", [ModelName.RIDGE, ModelName.LASSO, ModelName.ELASTICNET])
def test_to_sklearn_predicts_like_the_fit(model: ModelName):
    fit = LinearFit(np.array([0.1, -0.2, 0.0]), 0.01, model, 1e-4, 0.5, 100)
    X = np.random.default_rng(0).normal(size=(7, 3))
    est = to_sklearn(fit)
    assert (
        type(est).__name__
        == {"ridge": "Ridge", "lasso": "Lasso", "elasticnet": "ElasticNet"}[model]
    )
    np.testing.assert_allclose(est.predict(X), fit.predict(X))


def test_importing_models_does_not_import_sklearn():
    code = (
        "import sys, engine.research.models, engine.pipeline; assert 'sklearn' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_linear_walk_forward_needs_finite_labels_only_where_known(prepared: Prepared):
    data = prepared.data
    y = np.where(data.available < len(data.rebalances), np.nan_to_num(data.y), np.nan)
    spec = LinearSpec(ModelName.RIDGE, 1.0)
    result = walk_forward_linear(data.X, y, data.available, data.predict_at, data.plan, spec)
    assert np.isfinite(result.scores[~np.isnan(result.scores)]).all()
    assert dataclasses.asdict(spec)["alpha"] == 1.0


@pytest.mark.parametrize("validation", [10, 200])
def test_tuning_with_more_held_out_periods_than_history_is_point_in_time(
    prepared: Prepared, validation: int
):
    """Issue 18, item 11: held-out periods reaching before the first period do not crash
    (an IndexError) or index the sums from their end: such a rebalance keeps the fixed
    penalty, and future labels still cannot move its scores."""
    data, y = prepared.data, np.nan_to_num(prepared.data.y)
    spec = LinearSpec(ModelName.LASSO, 1e-4, 1.0, InnerSplit(validation=validation, gap=2))
    base = walk_forward_linear(data.X, y, data.available, data.predict_at, data.plan, spec)
    fixed = dataclasses.replace(spec, tuning=None)
    untuned = walk_forward_linear(data.X, y, data.available, data.predict_at, data.plan, fixed)
    first = min(base.fits)
    early = data.predict_at == first  # too few periods to tune: the fixed penalty
    np.testing.assert_array_equal(base.scores[early], untuned.scores[early])
    future = data.available > first
    noisy = np.where(future, np.random.default_rng(1).normal(0, 1, len(y)), y)
    moved = walk_forward_linear(data.X, noisy, data.available, data.predict_at, data.plan, spec)
    np.testing.assert_array_equal(base.scores[early], moved.scores[early])
    if validation == 200:  # no rebalance has that many periods: never tuned
        np.testing.assert_array_equal(base.scores, untuned.scores)
        assert base.info["tuned_rebalances"] == 0


def test_period_window_refuses_periods_outside_the_sums(prepared: Prepared):
    data, y = prepared.data, np.nan_to_num(prepared.data.y)
    stats = period_stats(data.X, y, data.available, len(data.rebalances))
    with pytest.raises(ValueError, match="outside"):
        stats.window(-3, 2)
    assert stats.window(4, 2).n == 0  # empty, not an error


@pytest.mark.parametrize("shuffled", [False, True])
def test_rows_by_period_groups_rows_in_ascending_order(shuffled):
    """Rows of each period 0..n-1, ascending; -1 and n or more dropped; sorted or not."""
    from engine.research.models.walkforward import rows_by_period

    rng = np.random.default_rng(3)
    period = np.sort(rng.integers(-1, 7, 200))
    if shuffled:
        period = rng.permutation(period)
    groups = rows_by_period(period, 6)
    assert len(groups) == 6
    for p, rows in enumerate(groups):
        np.testing.assert_array_equal(rows, np.flatnonzero(period == p))
