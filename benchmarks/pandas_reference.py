"""The tutorial way to walk a model forward: refit scikit-learn at every rebalance.

The speed reference of ``engine.research.models.walk_forward_linear``. At each rebalance date T a
boolean mask selects the training rows of a pandas frame (label known by T: its end date
<= T, the engine's purge), a fresh ``sklearn.linear_model.Ridge`` is fitted on them, and
the rows dated T are scored. Same rows, penalty, purge and rebalance dates as the engine's
ridge, so the scores agree (tests/test_bench.py holds them to 1e-6): only the method
differs. The features and the per-date rank of the tutorial way are in
``benchmarks/features_pandas.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DATE, LABEL_END = "date", "label_end"


def inputs(archive: Any, settings: Any, data: Any) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """The engine's model frame as pandas (features as float64) and the rebalance dates the
    engine scores (its active rebalances)."""
    from engine.features.panel import label_end_name
    from engine.features.sets import feature_set
    from engine.pipeline.frame import frame_file, model_frame

    features = feature_set(settings.features.set)
    files = frame_file(archive, settings.features, settings.paths, features)
    frame = model_frame(archive, settings.features, features) if files is None else files.frame()
    frame = frame.rename({label_end_name(settings.features.horizon): LABEL_END}).to_pandas()
    frame[list(data.features)] = frame[list(data.features)].astype(np.float64)
    return frame, pd.DatetimeIndex(data.rebalances[data.plan.active])


def walk_forward_ridge(
    frame: pd.DataFrame,
    features: Sequence[str],
    label: str,
    rebalances: Sequence[Any],
    alpha: float = 1.0,
) -> pd.Series:
    """Out-of-sample ridge scores of the rows dated at each rebalance; NaN elsewhere."""
    from sklearn.linear_model import Ridge

    columns = list(features)
    scores = pd.Series(np.nan, index=frame.index)
    for when in rebalances:
        train = frame[(frame[LABEL_END] <= when) & frame[label].notna()]
        today = frame[frame[DATE] == when]
        if len(train) < len(columns) + 2 or today.empty:
            continue
        model = Ridge(alpha=alpha).fit(train[columns], train[label])
        scores[today.index] = model.predict(today[columns])
    return scores
