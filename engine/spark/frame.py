"""The model frame computed in Spark: the rows and values of
``engine.pipeline.frame.model_frame``, never brought whole to the driver.

The feature panel of the set (``panel.spark_panel``) keeps the rows with
``MIN_HISTORY_ROWS`` of history; a label that is not finite becomes null; the features
are normalised per date (``crosssection.normalised``) and cast to float32. The result is a
lazy Spark DataFrame with the columns of ``frame_schema`` (date, symbol, the factors, the
label and its end date), unordered: what the driver reads from it is ordered on the way
out.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from engine.config import FeatureSpec
from engine.data.archive import Archive
from engine.features import label_name
from engine.features.panel import label_end_name
from engine.features.sets import FeatureSet
from engine.pipeline.frame import MIN_HISTORY_ROWS, frame_schema
from engine.schema import DATE, SECTOR, SYMBOL
from engine.spark.crosssection import normalised
from engine.spark.panel import spark_panel


def spark_model_frame(spark: Any, archive: Archive, spec: FeatureSpec, features: FeatureSet) -> Any:
    """The model frame of ``features`` over ``archive``'s cache as a lazy Spark DataFrame
    (``model_frame``'s rows and columns, in no particular order)."""
    from pyspark.sql import functions as F

    names = features.names
    label, end = label_name(spec.horizon), label_end_name(spec.horizon)
    panel = spark_panel(spark, archive.cache_dir, features, (spec.horizon,), MIN_HISTORY_ROWS)
    frame = panel.select(DATE, SYMBOL, *names, label, end)
    value = F.col(label)  # a return through a price near 0 overflows: unknown
    finite = ~F.isnan(value) & (F.abs(value) != float("inf"))
    frame = frame.withColumn(label, F.when(finite, value))
    if spec.sector_neutral:  # the sector is only needed to demean within it
        frame = frame.join(F.broadcast(_sectors(spark, archive)), on=SYMBOL, how="left")
    frame = normalised(frame, names, spec.normalisation, spec.sector_neutral)
    return frame.select(DATE, SYMBOL, *names, label, end)


def _sectors(spark: Any, archive: Archive) -> Any:
    """symbol, sector of the archive's companies (a few hundred rows) as a Spark table."""
    companies = archive.companies.select(SYMBOL, pl.col(SECTOR).cast(pl.String))
    return spark.createDataFrame(companies.to_arrow())


def collected(frame: Any, spec: FeatureSpec, names: tuple[str, ...]) -> pl.DataFrame:
    """Rows of a Spark model frame on the driver, in (date, symbol) order, with the local
    frame's schema. Only for rows the driver needs (the rebalance dates'), or for tests."""
    table = frame.orderBy(DATE, SYMBOL).toArrow()
    return pl.from_arrow(table).cast(dict(frame_schema(spec, names)))  # type: ignore[arg-type]
