"""The linear walk-forward's per-period sufficient statistics, aggregated in Spark.

The rows of the Spark model frame (``engine.spark.frame``) that can ever train a model
(label known at some rebalance) get their ``period``: the rebalance from which the label
is known (``splits.available_period``, computed on the driver for each trading day and
joined in Spark). Spark groups them by period and sums every product x_i x_j (i <= j),
x_i y, x_i, y, y^2 and the count; only those P x (k(k+1)/2 + 2k + 3) numbers come back to
the driver, which cumulates them into the ``PeriodStats`` the single-machine walk-forward
solves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from engine.research.models import LINEAR_MODELS, TREE_MODELS, ModelError, PeriodStats
from engine.research.splits import available_period
from engine.schema import ModelName

LINEAR = tuple(m.value for m in LINEAR_MODELS)

PERIOD = "period"
DAY = "day"


def period_table(spark: Any, calendar: np.ndarray, rebalances: np.ndarray) -> Any:
    """day, period: the available period (``available_period``) of a label that ends on
    each trading day of ``calendar`` (datetime64[D]), as a small Spark table."""
    days = np.asarray(calendar, dtype="datetime64[D]")
    periods = available_period(days, rebalances)
    return spark.createDataFrame(pa.table({DAY: pa.array(days), PERIOD: pa.array(periods)}))


def trainable(
    frame: Any, periods: Any, names: tuple[str, ...], label: str, end: str, n_periods: int
) -> Any:
    """period, x0..x{k-1} and y (doubles) of the rows of the Spark model frame ``frame``
    whose label is known at a rebalance: ``end`` (the label's end date; the row's own
    date when the purge is off) joined to ``periods`` (``period_table``)."""
    from pyspark.sql import functions as F

    joined = frame.join(F.broadcast(periods), frame[end] == periods[DAY])
    rows = joined.where(F.col(label).isNotNull() & (F.col(PERIOD) < n_periods))
    x = (F.col(name).cast("double").alias(f"x{j}") for j, name in enumerate(names))
    return rows.select(PERIOD, *x, F.col(label).alias("y"))


def aggregate(frame: Any, k: int, n_periods: int) -> PeriodStats:
    """``PeriodStats`` of a Spark DataFrame (period, x0..x{k-1}, y) by Spark's group-by."""
    from pyspark.sql import functions as F

    x = [F.col(f"x{j}") for j in range(k)]
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    sums = [
        *(F.sum(x[i] * x[j]).alias(f"xx{i}_{j}") for i, j in pairs),
        *(F.sum(x[j] * F.col("y")).alias(f"xy{j}") for j in range(k)),
        *(F.sum(x[j]).alias(f"sx{j}") for j in range(k)),
        F.sum("y").alias("sy"), F.sum(F.col("y") * F.col("y")).alias("yty"),
        F.count(F.lit(1)).alias("n"),
    ]  # fmt: skip
    table = frame.groupBy(PERIOD).agg(*sums).toArrow()
    return _cumulated(table, k, n_periods, pairs)


def _cumulated(table: pa.Table, k: int, n_periods: int, pairs: list) -> PeriodStats:
    at = table.column(PERIOD).to_numpy() + 1  # index 0 is the empty prefix
    xtx, xty, sx = (np.zeros((n_periods + 1, k, k)), np.zeros((n_periods + 1, k)),
                    np.zeros((n_periods + 1, k)))  # fmt: skip
    sy, yty, n = (np.zeros(n_periods + 1) for _ in range(3))
    for i, j in pairs:
        xtx[at, i, j] = xtx[at, j, i] = table.column(f"xx{i}_{j}").to_numpy()
    for j in range(k):
        xty[at, j] = table.column(f"xy{j}").to_numpy()
        sx[at, j] = table.column(f"sx{j}").to_numpy()
    sy[at], yty[at] = table.column("sy").to_numpy(), table.column("yty").to_numpy()
    n[at] = table.column("n").to_numpy()
    return PeriodStats(*(np.cumsum(a, axis=0) for a in (xtx, xty, sx, sy, yty, n)))


def given(stats: PeriodStats) -> Callable[..., PeriodStats]:
    """A ``sums`` for ``walk_forward_linear`` that returns ``stats``, made beforehand (by
    ``aggregate``) over the rows of the whole frame, whichever rows it is handed."""

    def sums(X: Any, y: np.ndarray, period: np.ndarray, n_periods: int) -> PeriodStats:
        if len(stats.n) != n_periods + 1:
            raise ValueError(f"the sums have {len(stats.n) - 1} periods, not {n_periods}")
        return stats

    return sums


def check_model(model: ModelName) -> None:
    """Refuse, in one line, a model whose walk-forward does not run from sums: trees
    stay single-machine."""
    if model in TREE_MODELS:
        raise ModelError(
            f"--engine spark walks forward the linear models ({', '.join(sorted(LINEAR))}) "
            f"and the baselines; {model.value} stays single-machine: run it without "
            "--engine spark"
        )
