"""The feature panel of a set computed by Spark over the archive's Parquet cache.

The statement is the set's Spark SQL (``engine.features.spark_sql``); the views it reads,
``prices`` and ``index``, are the cache's ``prices.parquet`` and ``index.parquet`` (on a
cluster the cache folder must be on storage every executor reads). Rows come back to the
driver as Parquet parts that Spark writes, cast to the Polars panel's schema, for the one
``features.parquet`` the command writes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from engine.config import ComputeSpec
from engine.data.archive import Archive
from engine.features.panel import DEFAULT_HORIZONS, expression_panel, panel_outputs
from engine.features.sets import FeatureSet
from engine.features.spark_sql import spark_panel_sql
from engine.spark.session import spark_session

VIEWS = ("prices", "index")  # <cache_dir>/<name>.parquet, registered under that name


def register_cache(spark: Any, cache_dir: Path) -> None:
    """Register the cache's tables as the temporary views the panel SQL reads."""
    for name in VIEWS:
        spark.read.parquet(str(Path(cache_dir) / f"{name}.parquet")).createOrReplaceTempView(name)


def spark_panel(
    spark: Any,
    cache_dir: Path,
    features: FeatureSet,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    min_history: int = 1,
) -> Any:
    """The panel of ``features`` as a lazy Spark DataFrame (columns and rows of
    ``engine.features.panel.expression_panel``)."""
    register_cache(spark, cache_dir)
    return spark.sql(spark_panel_sql(panel_outputs(features, horizons), horizons, min_history))


def spark_feature_batches(
    compute: ComputeSpec, archive: Archive, features: FeatureSet, scratch: Path
) -> Iterator[pl.DataFrame]:
    """The panel of ``features`` over ``archive``'s cache, computed on a Spark session of
    ``compute`` and written by Spark as Parquet parts in a temporary folder under
    ``scratch`` (on a cluster: storage the executors write and this machine reads), then
    read back part by part, in order, with the schema of the Polars panel."""
    schema = expression_panel(archive.prices, archive.index, features).collect_schema()
    Path(scratch).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".spark-") as tmp:
        parts = Path(tmp) / "panel"
        with spark_session(compute) as spark:
            spark_panel(spark, archive.cache_dir, features).write.parquet(str(parts))
        files = sorted(parts.glob("part-*.parquet"))  # the parts of a global sort, in order
        for file in files:
            yield pl.read_parquet(file).cast(dict(schema))  # type: ignore[arg-type]
        if not files:
            yield pl.DataFrame(schema=schema)
