"""The model frame in Spark (``engine.spark.frame``): its normalised features equal the
local frame's, the walk-forward from its sums scores as a local run does, and the driver
receives only the rows dated on a rebalance. Spark ``local[2]``, 2 shuffle partitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from engine.cli import main
from engine.config import FeatureSpec, Paths, RunSpec
from engine.data.archive import load_archive
from engine.features.sets import feature_set, make_set
from engine.logs import StageTimer
from engine.pipeline import prepare, run
from engine.pipeline.frame import model_frame
from engine.schema import ModelName, Normalisation
from tests.spark_support import LOCAL, needs_spark

pytest_plugins = ("tests.spark_support",)  # fixtures: spark, tiny_archive

pytestmark = needs_spark
SPARK_RUN = ["--engine", "spark", "--spark-master", LOCAL.spark_master,
             *(arg for conf in LOCAL.spark_conf for arg in ("--spark-conf", conf))]  # fmt: skip


def _spark_frame(spark, archive, spec: FeatureSpec, features) -> pl.DataFrame:
    from engine.spark.frame import collected, spark_model_frame

    return collected(spark_model_frame(spark, archive, spec, features), spec, features.names)


@pytest.mark.parametrize(
    "spec",
    [FeatureSpec(), FeatureSpec(normalisation=Normalisation.ZSCORE, sector_neutral=True)],
    ids=["rank", "zscore-sector-neutral"],
)
def test_spark_model_frame_equals_the_local_frame(
    spark, tiny_archive: Path, tmp_path: Path, spec: FeatureSpec
):
    archive = load_archive(tiny_archive, tmp_path)
    core = feature_set("core")
    local, got = model_frame(archive, spec, core), _spark_frame(spark, archive, spec, core)
    assert local.height > 5_000
    assert got.schema == local.schema
    features, label = list(core.names), local.columns[-2]
    assert_frame_equal(got.drop(*features, label), local.drop(*features, label))  # keys, end
    for name in features:  # float32, equal to the last unit in the last place
        np.testing.assert_array_max_ulp(got[name].to_numpy(), local[name].to_numpy(), maxulp=1)
    assert_frame_equal(got.select(label), local.select(label), abs_tol=1e-12, rel_tol=0)


def test_ranks_of_ties_and_nulls_equal_the_local_ones(spark, tiny_archive: Path, tmp_path: Path):
    """A factor with ties (a sign) and nulls (a window not yet full) ranks as locally."""
    archive = load_archive(tiny_archive, tmp_path)
    spec = FeatureSpec()
    ties = make_set("ties", [("up", "Sign(Delta($close, 1))", ""), ("m", "Mean($close, 300)", "")])
    local, got = model_frame(archive, spec, ties), _spark_frame(spark, archive, spec, ties)
    assert local["up"].n_unique() < 100 and (local["m"] == 0).sum() > 0
    assert_frame_equal(got, local, check_exact=True)


@pytest.mark.parametrize("model", [ModelName.RIDGE, ModelName.LASSO])
def test_walk_forward_from_the_spark_frame_equals_the_local_run(
    spark, tiny_archive: Path, tmp_path: Path, model: ModelName
):
    from engine.spark.pipeline import run_in_spark

    paths = Paths(data=tiny_archive, output=tmp_path, cache=tmp_path / "cache")
    spec = RunSpec(paths=paths).with_model(model)
    archive = load_archive(tiny_archive, paths.cache_dir)
    local, distributed = run(archive, spec), run_in_spark(archive, spec)
    assert local.predictions.height > 100
    assert_frame_equal(distributed.predictions, local.predictions, abs_tol=1e-8, rel_tol=0)
    assert_frame_equal(distributed.ic, local.ic, abs_tol=1e-8, rel_tol=0)
    assert_frame_equal(distributed.history, local.history, abs_tol=1e-8, rel_tol=0)
    assert distributed.metrics == pytest.approx(local.metrics, abs=1e-8, nan_ok=True)


def test_the_driver_receives_only_the_rebalance_rows(spark, tiny_archive: Path, tmp_path: Path):
    from engine.spark.pipeline import spark_prepare

    paths = Paths(data=tiny_archive, output=tmp_path, cache=tmp_path / "cache")
    spec = RunSpec(paths=paths)
    archive = load_archive(tiny_archive, paths.cache_dir)
    local = prepare(archive, spec, StageTimer()).data
    ready, inputs = spark_prepare(spark, archive, spec, StageTimer())
    assert inputs.frame_rows == len(local.y)
    assert len(inputs.data.y) == len(local.scored) == len(ready.data.y)  # the driver's rows
    assert len(inputs.data.y) < inputs.frame_rows / 10  # monthly rebalances: ~1 row in 21
    assert_frame_equal(ready.data.keys, local.keys)
    np.testing.assert_array_equal(ready.data.plan.active, local.plan.active)


def test_momentum_baseline_of_a_set_without_it_reads_a_spark_frame(
    spark, tiny_archive: Path, tmp_path: Path
):
    from engine.features.sets import to_toml
    from engine.spark.pipeline import run_in_spark

    own = tmp_path / "own.toml"
    own.write_text(to_toml(make_set("own", [("vol", "Std($close / Ref($close, 1), 20)", "")])))
    paths = Paths(data=tiny_archive, output=tmp_path, cache=tmp_path / "cache")
    spec = RunSpec(paths=paths).replace(**{"features.set": str(own)})
    spec = spec.with_model(ModelName.MOMENTUM)
    archive = load_archive(tiny_archive, paths.cache_dir)
    local, distributed = run(archive, spec), run_in_spark(archive, spec)
    assert local.predictions.height > 100
    assert_frame_equal(distributed.predictions, local.predictions)


def test_engine_run_spark_writes_the_local_run_files(spark, tiny_archive: Path, tmp_path: Path):
    written = {}
    for engine, flags in (("polars", []), ("spark", SPARK_RUN)):
        out = tmp_path / engine
        args = ["-q", "run", "--model", "ridge", "--no-tracking", "--no-report", *flags,
                "--data-path", str(tiny_archive), "--output-path", str(out)]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        written[engine] = out
    assert_same_run_files(written["spark"], written["polars"], "ridge")


def assert_same_run_files(got: Path, local: Path, model: str) -> None:
    """The holdings, IC, equity and metrics files of two runs of ``model`` agree within
    1e-8."""
    for name in ("portfolio", "holdings", "ic", "equity"):
        expected = pl.read_csv(local / f"{name}_{model}.csv", try_parse_dates=True)
        assert expected.height > 0
        written = pl.read_csv(got / f"{name}_{model}.csv", try_parse_dates=True)
        assert_frame_equal(written, expected, abs_tol=1e-8, rel_tol=0)
    metrics = [json.loads((d / f"metrics_{model}.json").read_text()) for d in (got, local)]
    assert metrics[0]["metrics"] == pytest.approx(metrics[1]["metrics"], abs=1e-8, nan_ok=True)
