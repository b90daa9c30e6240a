"""The model boundary: the model frame as the arrays a walk-forward needs.

A run keeps in memory only what every model needs on every row (the label and the
rebalance periods, ~20 bytes a row) and the keys of the rows it scores (the rebalance
dates). The features stay in the cache's frame file and are read by rows
(``framefile.FeatureRows``): per period for the linear sufficient statistics, per date
for the scored rows and the trees' sampled training dates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.config import FeatureSpec, Paths, WalkForwardSpec
from engine.data.archive import Archive
from engine.features import label_name
from engine.features.panel import label_end_name
from engine.features.sets import FeatureSet
from engine.pipeline.frame import frame_file, model_frame
from engine.pipeline.framefile import FeatureRows, key_arrays
from engine.research.splits import (
    Schedule,
    available_period,
    prediction_period,
    rebalance_dates,
    schedule,
)
from engine.schema import DATE, SYMBOL

MOMENTUM_FEATURE = "mom_12_1"  # the momentum baseline's score: core's 12-1 momentum


@dataclass(frozen=True)
class FrameColumns:
    """The model frame as arrays, from the cache or from a frame in memory.

    Attributes
    ----------
    days : int32 days since 1970-01-01 of each row (rows sorted by (date, symbol)).
    y : float64 label; NaN where unknown.
    ends : int32 days of each label's last price; ``framefile.LABEL_NEVER`` where unknown.
    X : float32 features (rows x features): an array, or a ``FeatureRows`` read by rows.
    keys : rows -> (date, symbol, label) frame of those rows.
    """

    days: np.ndarray
    y: np.ndarray
    ends: np.ndarray
    X: np.ndarray | FeatureRows
    keys: Callable[[np.ndarray], pl.DataFrame]


def model_inputs(
    archive: Archive, spec: FeatureSpec, paths: Paths, features: FeatureSet
) -> FrameColumns:
    """The model frame's columns of the factors of ``features``: from the cache (features
    left on disk), or computed in memory when the frame cache is off."""
    file = frame_file(archive, spec, paths, features)
    if file is None:
        return frame_columns(model_frame(archive, spec, features), spec, features.names)
    label, stored = label_name(spec.horizon), file.key_columns()
    return FrameColumns(
        days=stored["date"],
        y=stored["label"],
        ends=stored["label_end"],
        X=file.X(),
        keys=lambda rows: file.frame(rows, (DATE, SYMBOL, label)),
    )


def frame_columns(frame: pl.DataFrame, spec: FeatureSpec, names: tuple[str, ...]) -> FrameColumns:
    """The columns of a model frame (or of some of its rows) in memory, as read from the
    cache's file."""
    label, end = label_name(spec.horizon), label_end_name(spec.horizon)
    stored = key_arrays(frame, label, end)
    return FrameColumns(
        days=stored["date"],
        y=stored["label"],
        ends=stored["label_end"],
        X=frame.select(names).to_numpy(order="c"),
        keys=lambda rows: frame.select(DATE, SYMBOL, label)[rows],
    )


@dataclass(frozen=True)
class ModelData:
    """Everything a model sees, as arrays aligned row by row with the model frame.

    Attributes
    ----------
    X : normalised features, float32 (rows x features); an array or a ``FeatureRows``.
    y : the label (forward simple return over ``horizon`` days); NaN where not known.
    available : rebalance index from which each row's label is known (the purge);
        ``len(rebalances)`` for never.
    predict_at : rebalance index of the row's date, or -1.
    date_id : index of the row's date in the trading calendar.
    scored : the rows dated on a rebalance (``predict_at >= 0``), ascending.
    keys : date, symbol and label of the ``scored`` rows, in that order.
    rebalances, plan : rebalance dates and the training window of each.
    features, label : the feature columns of ``X`` and the label's name.
    horizon : the label's horizon, in trading days.
    momentum : rows -> normalised ``MOMENTUM_FEATURE`` of those rows, for a feature set
        without core's definition of it (None: read from ``X``).
    """

    X: np.ndarray | FeatureRows
    y: np.ndarray
    available: np.ndarray
    predict_at: np.ndarray
    date_id: np.ndarray
    scored: np.ndarray
    keys: pl.DataFrame
    rebalances: np.ndarray
    plan: Schedule
    features: tuple[str, ...]
    label: str
    horizon: int
    momentum: Callable[[np.ndarray], np.ndarray] | None = None

    def momentum_scores(self, rows: np.ndarray) -> np.ndarray:
        """The normalised 12-1 momentum of ``rows`` (the momentum baseline's scores)."""
        if self.momentum is not None:
            return self.momentum(rows)
        return self.X[rows][:, self.features.index(MOMENTUM_FEATURE)]


def model_data(
    columns: FrameColumns,
    features: FeatureSpec,
    walk: WalkForwardSpec,
    calendar: np.ndarray,
    names: tuple[str, ...],
    first_available: int | None = None,
) -> ModelData:
    """Arrays for the walk-forward from the model frame's columns (``model_inputs``).

    ``first_available``: the first period in which any label of the whole frame is known,
    when ``columns`` hold only some of its rows (e.g. those of the rebalance dates, with
    the sums made elsewhere); by default, the first of ``columns``' own.

    With ``walk.purge`` off (a deliberately leaky configuration, for the honesty
    tests only) a row becomes trainable at the first rebalance on or after its own
    date, before its label is known.
    """
    rebalances = rebalance_dates(calendar, walk.rebalance)
    ends = columns.ends if walk.purge else columns.days
    available = available_period(ends, rebalances)  # LABEL_NEVER: after every rebalance
    available[np.isnan(columns.y)] = len(rebalances)
    if first_available is None:
        known = available[available < len(rebalances)]
        first_available = int(known.min()) if known.size else len(rebalances)
    plan = schedule(
        rebalances, walk.train_window, walk.min_train_periods, walk.rolling_periods,
        first_available=first_available,
    )  # fmt: skip
    predict_at = per_distinct_day(prediction_period, columns.days, rebalances)
    scored = np.flatnonzero(predict_at >= 0)
    return ModelData(
        X=columns.X,
        y=columns.y,
        available=available,
        predict_at=predict_at,
        date_id=per_distinct_day(prediction_period, columns.days, calendar),
        scored=scored,
        keys=columns.keys(scored),
        rebalances=rebalances,
        plan=plan,
        features=names,
        label=label_name(features.horizon),
        horizon=features.horizon,
    )


def per_distinct_day(
    lookup: Callable[[np.ndarray, np.ndarray], np.ndarray], days: np.ndarray, marks: np.ndarray
) -> np.ndarray:
    """``lookup(days, marks)`` (a row-wise lookup of ``splits``) for ``days`` in ascending
    order, as the model frame's rows are: looked up once per distinct day and repeated
    over its rows. Days in any other order are looked up row by row."""
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    if days.size == 0 or np.any(days[starts[1:]] < days[starts[:-1]]):
        return lookup(days, marks)
    return np.repeat(lookup(days[starts], marks), np.diff(np.r_[starts, len(days)]))


def momentum_source(
    archive: Archive, spec: FeatureSpec, paths: Paths, rows: int
) -> Callable[[np.ndarray], np.ndarray]:
    """rows -> ``MOMENTUM_FEATURE`` from a model frame of that one ``core`` factor, made (or
    read from the cache) on first use. Its rows are the model frame's (the scoreable rows
    of the same data: which rows are scoreable does not depend on the factors), ``rows``
    of them."""
    from engine.features.sets import core_factor

    @functools.cache
    def column() -> np.ndarray | FeatureRows:
        columns = model_inputs(archive, spec, paths, core_factor(MOMENTUM_FEATURE))
        if len(columns.y) != rows:
            raise ValueError(f"the momentum frame has {len(columns.y)} rows, not {rows}")
        return columns.X

    return lambda wanted: column()[wanted][:, 0]
