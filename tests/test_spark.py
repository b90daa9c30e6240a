"""Apache Spark (``engine[spark]``) in local mode: the feature panel as transpiled Spark SQL
equal to Polars', and the champion scored through MLflow's Spark UDF equal to ``engine
predict`` (the model frame and the walk-forward in Spark: ``test_spark_frame``). Spark runs
on 2 cores with 2 shuffle partitions."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from engine.cli import main
from engine.config import ComputeSpec, Paths
from engine.data.archive import load_archive
from engine.features.panel import expression_panel, panel_outputs
from engine.features.sets import feature_set, make_set
from engine.features.spark_sql import spark_panel_sql, transpile
from tests.spark_support import LOCAL, needs_spark, panel_batches

pytest_plugins = ("tests.spark_support",)  # fixtures: spark, tiny_archive

# One factor per operator the Spark form supports (and the arithmetic and comparisons).
OPERATORS = {
    "ref": "Ref($close, 3)", "mean": "Mean($close, 7)", "std": "Std($volume, 9)",
    "var": "Var($high, 6)", "sum": "Sum($low, 4)", "max": "Max($open, 8)",
    "min": "Min($close, 8)", "count": "Count(If($close > Mean($close, 5), $close, $close / 0), 6)",
    "delta": "Delta($close, 5)", "slope": "Slope($close, 10)", "rsquare": "Rsquare($close, 10)",
    "resi": "Resi($close, 10)", "wma": "WMA($close, 6)", "corr": "Corr($close, $volume, 12)",
    "cov": "Cov($close, $index, 12)", "abs": "Abs(Delta($close, 1))",
    "sign": "Sign(Delta($close, 1))", "log": "Log($volume + 1)", "power": "Power($close, 0.5)",
    "greater": "Greater($open, $close)", "less": "Less($open, $close)",
    "cond": "If($close > $open, $high, $low)", "arith": "($high - $low) * 2 / ($close + 1) ** 2",
    "compare": "($close >= $open) & ($volume != 0) | ($close < $low)",
}  # fmt: skip


def _polars_panel(archive, features) -> pl.DataFrame:
    return expression_panel(archive.prices, archive.index, features).collect()


def _spark_panel(spark, archive, features) -> pl.DataFrame:
    from engine.spark.panel import spark_panel

    schema = expression_panel(archive.prices, archive.index, features).collect_schema()
    return pl.concat(panel_batches(spark_panel(spark, archive.cache_dir, features), schema))


# --- the Spark SQL (no Spark needed) ---------------------------------------------------------
def test_transpiled_panel_writes_every_named_window_out():
    sql = spark_panel_sql(panel_outputs(feature_set("core"), (21,)), (21,))
    assert " WINDOW " not in sql.upper().replace("\n", " ")
    assert "ROWS BETWEEN 62 PRECEDING AND CURRENT ROW" in sql.upper()


def test_named_window_inherits_its_base():
    duck = ("select avg(x) over w3 as a from t "
            "window s as (partition by k order by d), w3 as (s rows between 2 preceding and current row)")  # fmt: skip
    spark = transpile(duck).upper()
    assert "AVG(X) OVER (PARTITION BY K ORDER BY D" in spark
    assert "ROWS BETWEEN 2 PRECEDING AND CURRENT ROW" in spark


# --- one-line errors (no Spark needed) -------------------------------------------------------
def test_trees_stay_single_machine(tmp_path: Path):
    result = CliRunner().invoke(main, ["run", "--engine", "spark", "--model", "random_forest",
                                       "--output-path", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "random_forest stays single-machine" in result.output


def test_without_java_the_flag_says_what_to_install(tmp_path: Path):
    env = {"PATH": str(tmp_path), "JAVA_HOME": None}
    result = CliRunner(env=env).invoke(main, ["features", "--engine", "spark",
                                              "--output-path", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "apt-get install default-jre-headless" in result.output


def test_spark_conf_must_be_a_spark_setting():
    from engine.config import SettingsError

    with pytest.raises(SettingsError, match=r"spark\.<key>=<value>"):
        ComputeSpec(spark_conf=("executor.memory=4g",))


# --- features in Spark -----------------------------------------------------------------------
@needs_spark
def test_core_features_equal_polars(spark, tiny_archive: Path, tmp_path: Path):
    archive = load_archive(tiny_archive, tmp_path)
    core = feature_set("core")
    expected = _polars_panel(archive, core)
    assert_frame_equal(_spark_panel(spark, archive, core), expected, rel_tol=1e-9, abs_tol=1e-12)


@needs_spark
def test_every_supported_operator_equals_polars(spark, tiny_archive: Path, tmp_path: Path):
    archive = load_archive(tiny_archive, tmp_path)
    features = make_set("operators", [(n, e, "") for n, e in OPERATORS.items()])
    got, expected = _spark_panel(spark, archive, features), _polars_panel(archive, features)
    for name in OPERATORS:  # one operator at a time, so a failure names it
        # 1e-9 of the column's scale: a covariance of large levels (close and index) that
        # cancels to near zero differs in its last digits between summation orders
        scale = max(1.0, float(expected[name].abs().max() or 0.0))
        assert_frame_equal(got.select(name), expected.select(name), rel_tol=1e-9,
                           abs_tol=1e-9 * scale)  # fmt: skip


@needs_spark
def test_engine_features_spark_writes_the_polars_file(spark, tiny_archive: Path, tmp_path: Path):
    written = {}
    for engine in ("polars", "spark"):
        out = tmp_path / engine
        result = CliRunner().invoke(main, ["-q", "features", "--engine", engine, "--data-path",
                                           str(tiny_archive), "--output-path", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        written[engine] = pl.read_parquet(out / "features.parquet")
    assert_frame_equal(written["spark"], written["polars"], rel_tol=1e-9, abs_tol=1e-12)


# --- scoring the champion through MLflow's Spark UDF -----------------------------------------
@needs_spark
@pytest.mark.slow
def test_predict_through_the_spark_udf_equals_engine_predict(
    spark, tiny_archive: Path, tmp_path: Path
):
    out = tmp_path / "store"
    run = CliRunner().invoke(main, ["-q", "run", "--no-plots", "--data-path", str(tiny_archive),
                                    "--output-path", str(out), "--promote-metric", "ic",
                                    "--promote-threshold", "-1"])  # fmt: skip
    assert run.exit_code == 0, run.output
    day = pl.read_csv(out / "holdings_ridge.csv", try_parse_dates=True)["date"].max()
    written = {}
    for engine in ("polars", "spark"):
        result = CliRunner().invoke(main, ["-q", "predict", "--as-of", str(day), "--engine",
                                           engine, "--data-path", str(tiny_archive),
                                           "--output-path", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        path = out / f"predict_ridge_{day}.csv"
        written[engine] = pl.read_csv(path).sort("symbol")
        path.unlink()
    assert written["spark"].height > 0
    assert written["spark"].drop("score").equals(written["polars"].drop("score"))
    assert written["spark"]["score"].to_list() == pytest.approx(
        written["polars"]["score"].to_list(), rel=1e-12
    )


@needs_spark
@pytest.mark.slow
def test_core_features_equal_polars_on_the_default_archive(spark, tmp_path: Path):
    from engine.data.sources import resolve_archive
    from engine.spark.panel import spark_feature_batches

    archive = resolve_archive(Paths(output=tmp_path, cache=tmp_path / "cache"))
    core = feature_set("core")
    expected = _polars_panel(archive, core)
    assert expected.height > 1_000_000
    # written by Spark as Parquet parts (a 1.8M-row panel is too large to collect to a
    # default driver)
    got = pl.concat(spark_feature_batches(LOCAL, archive, core, tmp_path))
    assert_frame_equal(got, expected, rel_tol=1e-9, abs_tol=1e-12)
