"""``engine run --engine spark``: the run of ``engine.pipeline`` with its model frame in
Spark.

Spark computes the model frame (``frame``) and the walk-forward's per-period sums
(``sums``); the driver receives the rows dated on a rebalance (``modeldata``) and runs
the rest by the local code: the solves, the scores, the factors, the portfolio, the
backtest and the metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import RunSpec
from engine.data.archive import Archive
from engine.features.sets import core_factor, feature_set
from engine.logs import StageTimer
from engine.pipeline import (
    Prepared,
    RunResult,
    check_scoreable,
    check_trainable,
    evaluate_model,
    has_core_momentum,
    prepared,
)
from engine.pipeline.market import market
from engine.pipeline.modeldata import MOMENTUM_FEATURE
from engine.spark.frame import collected, spark_model_frame
from engine.spark.modeldata import SparkModelData, rebalance_rows, spark_model_data
from engine.spark.session import spark_session
from engine.spark.sums import given


def run_in_spark(archive: Archive, spec: RunSpec, *, report: bool = True) -> RunResult:
    """The research run of ``spec.model`` (a linear model or a baseline) on ``archive``,
    with the model frame and the sums in Spark on a session of ``spec.compute``
    (``report``: see ``pipeline.evaluate_model``)."""
    timer = StageTimer()
    with spark_session(spec.compute) as spark:
        ready, inputs = spark_prepare(spark, archive, spec, timer)
        return evaluate_model(archive, spec, ready, timer, given(inputs.stats), report=report)


def spark_prepare(
    spark: Any, archive: Archive, spec: RunSpec, timer: StageTimer
) -> tuple[Prepared, SparkModelData]:
    """``pipeline.prepare`` with the model frame in Spark: the prepared data of the
    rebalance dates' rows, and the sums of the whole frame with the row counts.

    Spark writes the frame once as Parquet in a temporary folder under the cache folder
    (on a cluster: storage every executor reads and writes), which the sums, the
    rebalance rows and the row count read; the folder is removed before returning."""
    features = feature_set(spec.features.set)
    scratch = Path(spec.paths.cache_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    with timer.stage("features"):
        panel = market(archive)
        with tempfile.TemporaryDirectory(dir=scratch, prefix=".spark-frame-") as tmp:
            frame = spark_model_frame(spark, archive, spec.features, features)
            frame.write.parquet(str(Path(tmp) / "frame"))  # computed once, read three times
            inputs = spark_model_data(spark, spark.read.parquet(str(Path(tmp) / "frame")),
                                      spec.features, spec.walk_forward, panel.calendar,
                                      features.names)  # fmt: skip
        check_scoreable(inputs.frame_rows)
        data = inputs.data
        if not has_core_momentum(features):
            source = _momentum(spark, archive, spec, data.rebalances, len(data.y))
            data = dataclasses.replace(data, momentum=source)
    labelled = bool(inputs.stats.n[-1] > 0)
    check_trainable(labelled, data.plan, spec, len(panel.calendar))
    return prepared(data, panel, features, spec, timer), dataclasses.replace(inputs, data=data)


def _momentum(
    spark: Any, archive: Archive, spec: RunSpec, rebalances: np.ndarray, rows: int
) -> Callable[[np.ndarray], np.ndarray]:
    """rows -> ``MOMENTUM_FEATURE`` of the rebalance dates' rows (``rows`` of them), from
    a Spark model frame of that one ``core`` factor made on first use (``momentum_source``
    of a local run)."""
    factor = core_factor(MOMENTUM_FEATURE)

    @functools.cache
    def column() -> np.ndarray:
        frame = spark_model_frame(spark, archive, spec.features, factor)
        scored = collected(rebalance_rows(spark, frame, rebalances), spec.features, factor.names)
        if scored.height != rows:
            raise ValueError(f"the momentum frame has {scored.height} rows, not {rows}")
        return scored[MOMENTUM_FEATURE].to_numpy()

    return lambda wanted: column()[wanted]
