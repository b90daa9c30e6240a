"""Walk-forward models: name -> estimator, the fast linear walk-forward, the tree walk-forward.

* ``linear``: ridge, lasso and elastic net solved from cumulated per-period sufficient
  statistics (exactly scikit-learn's solutions; tested to 1e-8).
* ``tuning``: inner, time-ordered validation of the linear penalty, from the same sums.
* ``walkforward``: the purged loops (every rebalance for linear models; every
  ``refit_every`` rebalances on sampled dates for trees).
* ``estimators``: the scikit-learn tree models and ``to_sklearn`` for MLflow.

Nothing here imports scikit-learn at module import.
"""

from __future__ import annotations

from engine.research.models.errors import ModelError
from engine.research.models.estimators import TREE_MODELS, to_sklearn, tree_factory
from engine.research.models.linear import (
    DEFAULT_ALPHA,
    LINEAR_MODELS,
    LinearFit,
    Moments,
    PeriodStats,
    enet_from_moments,
    period_stats,
)
from engine.research.models.tuning import InnerSplit
from engine.research.models.walkforward import (
    LinearSpec,
    RefitPlan,
    WalkForwardResult,
    training_mask,
    walk_forward_linear,
    walk_forward_refit,
)

__all__ = [
    "DEFAULT_ALPHA",
    "LINEAR_MODELS",
    "TREE_MODELS",
    "InnerSplit",
    "LinearFit",
    "LinearSpec",
    "ModelError",
    "Moments",
    "PeriodStats",
    "RefitPlan",
    "WalkForwardResult",
    "enet_from_moments",
    "period_stats",
    "to_sklearn",
    "training_mask",
    "tree_factory",
    "walk_forward_linear",
    "walk_forward_refit",
]
