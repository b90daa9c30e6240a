"""The walk-forward's inputs from a model frame that stays in Spark.

Spark keeps the frame (written once as Parquet by the executors) and aggregates its per-period sums
(``sums``); the driver receives only the rows dated on a rebalance, the rows that are
scored, and builds from them the ``ModelData`` of a local run (``pipeline.modeldata``),
restricted to those rows. The walk-forward, the portfolio and the backtest then run on the
driver by the local code, with the sums from Spark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from engine.config import FeatureSpec, WalkForwardSpec
from engine.features import label_name
from engine.features.panel import label_end_name
from engine.pipeline.modeldata import ModelData, frame_columns, model_data
from engine.research.models import PeriodStats
from engine.research.splits import rebalance_dates
from engine.schema import DATE
from engine.spark.frame import collected
from engine.spark.sums import DAY, aggregate, period_table, trainable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparkModelData:
    """A model frame in Spark, as the walk-forward sees it.

    Attributes
    ----------
    data : the ``ModelData`` of the frame's rows dated on a rebalance, the rows the driver
        received (its ``scored`` rows are all of them).
    stats : the per-period sums over every trainable row of the frame.
    frame_rows : rows of the whole frame (counted in Spark).
    """

    data: ModelData
    stats: PeriodStats
    frame_rows: int


def spark_model_data(
    spark: Any,
    frame: Any,
    spec: FeatureSpec,
    walk: WalkForwardSpec,
    calendar: np.ndarray,
    names: tuple[str, ...],
) -> SparkModelData:
    """Sums and scoring rows of the Spark model frame ``frame`` (``spark_model_frame``) on
    the trading ``calendar`` (datetime64[D]); ``frame`` is read three times: it should be
    stored (written as Parquet and read back), not recomputed."""
    rebalances = rebalance_dates(calendar, walk.rebalance)
    n_periods = len(rebalances)
    label = label_name(spec.horizon)
    end = label_end_name(spec.horizon) if walk.purge else DATE
    periods = period_table(spark, calendar, rebalances)
    rows = trainable(frame, periods, names, label, end, n_periods)
    stats = aggregate(rows, len(names), n_periods)
    scored = collected(rebalance_rows(spark, frame, rebalances), spec, names)
    counts = np.diff(stats.n)
    first = int(np.flatnonzero(counts)[0]) if counts.any() else n_periods
    columns = frame_columns(scored, spec, names)
    data = model_data(columns, spec, walk, calendar, names, first_available=first)
    total = frame.count()
    log.info("model frame in spark: %d rows; the driver received %d, those of the %d "
             "rebalance dates", total, scored.height, n_periods)  # fmt: skip
    return SparkModelData(data, stats, total)


def rebalance_rows(spark: Any, frame: Any, rebalances: np.ndarray) -> Any:
    """The rows of ``frame`` dated on one of ``rebalances`` (datetime64[D])."""
    from pyspark.sql import functions as F

    days = pa.table({DAY: pa.array(np.asarray(rebalances, dtype="datetime64[D]"))})
    marks = F.broadcast(spark.createDataFrame(days))
    return frame.join(marks, frame[DATE] == marks[DAY], "left_semi")
