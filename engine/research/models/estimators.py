"""Name -> estimator for the scikit-learn (tree) models, and the sklearn view of any fit.

scikit-learn is imported inside the functions: it is a slow import, and the linear
models and baselines never need it.

Hyperparameters are fixed and deliberately small: the trees see ~60k rows (sampled
dates) at each yearly refit, and ``engine run --model all`` must stay under two minutes
on two cores (docs/benchmarks.md). Shallow trees with large leaves also suit a label
whose signal-to-noise ratio is tiny (a rank IC of a few percent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.research.models.linear import LinearFit, to_sklearn_linear
from engine.schema import ModelName

TREE_MODELS = frozenset({ModelName.RANDOM_FOREST, ModelName.HIST_GBM})

RANDOM_FOREST_PARAMS: dict[str, Any] = {
    "n_estimators": 40,
    "max_depth": 6,
    "min_samples_leaf": 100,
    "max_features": 0.33,
    "max_samples": 0.25,  # each tree sees ~15k of the ~60k sampled rows
}
# early_stopping=False: its validation split is random, not time-ordered, so it would
# peek at rows dated after the training rows it stops for.
HIST_GBM_PARAMS: dict[str, Any] = {
    "max_iter": 100,
    "learning_rate": 0.05,
    "max_depth": 3,
    "min_samples_leaf": 200,
    "l2_regularization": 1.0,
    "early_stopping": False,
}


def tree_factory(model: ModelName, seed: int, n_jobs: int) -> Callable[[], Any]:
    """A function returning a fresh, unfitted estimator for a tree ``model``.

    Random forests build trees on ``n_jobs`` threads; histogram gradient boosting uses
    OpenMP threads, which the caller limits (``threadpoolctl``) to ``n_jobs`` as well.
    """
    if model is ModelName.RANDOM_FOREST:
        from sklearn.ensemble import RandomForestRegressor

        params = {**RANDOM_FOREST_PARAMS, "n_jobs": n_jobs, "random_state": seed}
        return lambda: RandomForestRegressor(**params)
    if model is ModelName.HIST_GBM:
        from sklearn.ensemble import HistGradientBoostingRegressor

        return lambda: HistGradientBoostingRegressor(**HIST_GBM_PARAMS, random_state=seed)
    raise ValueError(f"{model.value!r} is not a tree model")


def to_sklearn(model: Any) -> Any:
    """The fitted model as a scikit-learn estimator (for MLflow's sklearn flavour): a linear
    fit becomes the matching estimator with its penalty; tree models already are ones."""
    if isinstance(model, LinearFit):
        return to_sklearn_linear(model)
    return model
