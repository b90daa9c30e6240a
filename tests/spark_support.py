"""What the Spark tests share: whether Spark can run here, the local session's settings,
the small synthetic archive, and the module-scoped fixtures over them."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from engine.config import ComputeSpec
from engine.data.synth import SynthSpec, synthesize

HERE = importlib.util.find_spec("pyspark") is not None and bool(
    os.environ.get("JAVA_HOME") or shutil.which("java")
)
needs_spark = pytest.mark.skipif(
    not HERE and not os.environ.get("ENGINE_REQUIRE_SPARK"),
    reason="needs engine[spark] and a Java runtime (apt-get install default-jre-headless)",
)
LOCAL = ComputeSpec(
    spark_master="local[2]",
    spark_conf=("spark.sql.shuffle.partitions=2", "spark.default.parallelism=2"),
)
TINY = SynthSpec(n_symbols=14, start=date(2015, 1, 1), end=date(2018, 12, 31), seed=11)


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 14-symbol, 2015-2018 synthetic archive (~14k price rows)."""
    folder = tmp_path_factory.mktemp("tiny_archive")
    synthesize(folder, TINY)
    return folder


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """A local Spark session (``LOCAL``) for the module's tests."""
    from engine.spark.session import spark_session

    with spark_session(LOCAL) as session:
        yield session


def panel_batches(frame: object, schema: pl.Schema) -> Iterator[pl.DataFrame]:
    """The rows of the Spark DataFrame ``frame`` on the driver, in its order, as Polars
    frames cast to ``schema`` (Spark's row numbers are 32-bit; Polars' are 64)."""
    table = frame.toArrow()  # type: ignore[attr-defined]
    for batch in table.to_batches():
        yield pl.from_arrow(batch).cast(dict(schema))  # type: ignore[arg-type]
    if table.num_rows == 0:
        yield pl.DataFrame(schema=schema)
