"""The linear walk-forward's per-period sufficient statistics, aggregated in Spark.

The rows that can ever train a model (label known at some rebalance) are staged as
Parquet, one row group per period: ``period`` (the rebalance from which the label is
known, ``available``), the features ``x0..x{k-1}`` and the label ``y``, as doubles. Spark
groups them by period and sums every product x_i x_j (i <= j), x_i y, x_i, y, y^2 and the
count; only those P x (k(k+1)/2 + 2k + 3) numbers come back to the driver, which cumulates
them into the ``PeriodStats`` the single-machine walk-forward solves. On a cluster the
staging folder must be on storage every executor reads.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.config import ComputeSpec
from engine.research.models import LINEAR_MODELS, TREE_MODELS, ModelError, PeriodStats
from engine.research.models.walkforward import rows_by_period
from engine.schema import ModelName
from engine.spark.session import spark_session

LINEAR = tuple(m.value for m in LINEAR_MODELS)

PERIOD = "period"


def stage_rows(X: Any, y: np.ndarray, period: np.ndarray, n_periods: int, path: Path) -> Path:
    """Write the rows with ``period < n_periods`` to the Parquet file ``path``, period by
    period (``X`` is read one period's rows at a time: an array or ``FeatureRows``)."""
    k = X.shape[1]
    schema = pa.schema([(PERIOD, pa.int32()), *((f"x{j}", pa.float64()) for j in range(k)),
                        ("y", pa.float64())])  # fmt: skip
    with pq.ParquetWriter(path, schema) as writer:
        for p, rows in enumerate(rows_by_period(period, n_periods)):
            if rows.size:
                block = np.asarray(X[rows], dtype=np.float64)
                columns = [np.full(rows.size, p, np.int32), *block.T, y[rows].astype(np.float64)]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    return path


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


def spark_sums(spark: Any, folder: Path) -> Callable[..., PeriodStats]:
    """A ``period_stats`` (X, y, period, n_periods) -> ``PeriodStats`` that stages the rows
    under ``folder`` and aggregates them in ``spark``."""

    def period_stats(X: Any, y: np.ndarray, period: np.ndarray, n_periods: int) -> PeriodStats:
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = stage_rows(X, y, period, n_periods, Path(folder) / "model_rows.parquet")
        return aggregate(spark.read.parquet(str(path)), X.shape[1], n_periods)

    return period_stats


def check_model(model: ModelName) -> None:
    """Refuse, in one line, a model whose walk-forward does not run from sums: trees
    stay single-machine."""
    if model in TREE_MODELS:
        raise ModelError(
            f"--engine spark walks forward the linear models ({', '.join(sorted(LINEAR))}) "
            f"and the baselines; {model.value} stays single-machine: run it without "
            "--engine spark"
        )


@contextlib.contextmanager
def sums_in_spark(compute: ComputeSpec, scratch: Path) -> Iterator[Callable[..., PeriodStats]]:
    """``spark_sums`` on a session of ``compute``, staging under a temporary folder in
    ``scratch`` (removed on exit)."""
    Path(scratch).mkdir(parents=True, exist_ok=True)
    with spark_session(compute) as spark, tempfile.TemporaryDirectory(dir=scratch) as tmp:
        yield spark_sums(spark, Path(tmp))
