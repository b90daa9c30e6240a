"""Scoring at scale: a registered model as MLflow's Spark UDF (``mlflow.pyfunc.spark_udf``).

The UDF loads the model once per Python worker from the same URI ``engine predict``
loads, in the driver's own environment (``env_manager="local"``: no environment is
built or downloaded), and scores a Spark DataFrame's rows by the model's signature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

ROW = "_engine_row"  # the rows' order, carried through Spark and restored at the end
SCORE = "_engine_score"


def spark_scorer(spark: Any, uri: str, features: Sequence[str]) -> Callable[[Any], np.ndarray]:
    """A scorer (Polars frame holding ``features`` -> one float64 score per row, in the
    frame's order) that scores on ``spark`` through the model at ``uri`` as a Spark UDF."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    udf = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
    columns = list(features)

    def score(frame: Any) -> np.ndarray:
        import polars as pl

        rows = frame.select(columns).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
        table = spark.createDataFrame(rows.to_pandas())
        scored = table.select(ROW, udf(F.struct(*columns)).alias(SCORE)).orderBy(ROW)
        return scored.toArrow().column(SCORE).to_numpy(zero_copy_only=False).astype(np.float64)

    return score
