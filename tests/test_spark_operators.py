"""The Spark forms of EMA, Rank, Mad, IdxMax/IdxMin, Quantile/Med, Skew and Kurt
(``engine.features.spark_forms``) in Spark ``local[2]``: each equals Polars on windows with
ties, nulls and constants, and the whole ``alpha158`` set from ``engine features --engine
spark`` equals Polars'."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlglot
from click.testing import CliRunner

from engine.cli import main
from engine.data.synth import SynthSpec, synthesize
from engine.features.panel import expression_panel, panel_outputs
from engine.features.sets import make_set
from engine.features.spark_sql import spark_panel_sql
from tests.panels import random_panel
from tests.spark_support import needs_spark, panel_batches

pytest_plugins = ("tests.spark_support",)  # fixtures: spark, tiny_archive

# Inputs: a plain price; the index's log return (null next to the index's missing days);
# volume (constant over 30 rows of the first symbol); up days (0/1: ties in every window);
# the sign of the volume's change (-1/0/1, all 0 in that constant stretch).
INPUTS = {
    "close": "$close",
    "mkt": "Log($index / Ref($index, 1))",
    "vol": "$volume",
    "up": "$close > Ref($close, 1)",
    "sign": "Sign(Delta($volume, 1))",
}
OPERATORS = ("EMA", "Rank", "Mad", "IdxMax", "IdxMin", "Med", "Skew", "Kurt")
SMALLEST = {"Skew": 3, "Kurt": 4}
# 3: EMA blocks of 116 rows, switched inside a 300-row history; 70: beyond
# Polars' Rank by shifted comparisons (its rolling_rank)
WINDOWS = (1, 3, 10, 70)


def _cases() -> dict[str, str]:
    cases = {}
    for operator in OPERATORS:
        for short, text in INPUTS.items():
            for n in sorted({max(n, SMALLEST.get(operator, 1)) for n in WINDOWS}):
                cases[f"{operator}_{short}_{n}"] = f"{operator}({text}, {n})"
        for short, text in INPUTS.items():
            for q in (0.2, 0.33, 0.8):
                cases[f"Quantile_{short}_{round(q * 100)}"] = f"Quantile({text}, 7, {q})"
    return cases


CASES = _cases()
SET = make_set("spark_forms", [(name, text, "") for name, text in CASES.items()])


@pytest.fixture(scope="module")
def panels(spark, tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(Spark's, Polars') panel of every case over a 4-symbol, 300-day random panel (one
    symbol listing 30 days late), written as the cache's two Parquet files."""
    from engine.spark.panel import spark_panel

    prices, index = random_panel(n_symbols=4, n_days=300, late=30)
    cache = tmp_path_factory.mktemp("cache")
    prices.write_parquet(cache / "prices.parquet")
    index.write_parquet(cache / "index.parquet")
    expected = expression_panel(prices.lazy(), index.lazy(), SET).collect()
    got = pl.concat(panel_batches(spark_panel(spark, cache, SET), expected.schema))
    return got, expected


def _assert_close(got: pl.Series, expected: pl.Series) -> None:
    """Equal nulls; values within 1e-9 relative, or 1e-12 of the column's largest value
    where they cancel to ~0 (a mean deviation of a constant window)."""
    a, e = got.fill_null(np.nan).to_numpy(), expected.fill_null(np.nan).to_numpy()
    assert (np.isnan(a) == np.isnan(e)).all(), f"{got.name}: nulls differ"
    ok = ~np.isnan(e)
    assert ok.any(), f"{got.name}: all null"
    scale = max(1.0, float(np.abs(e[ok]).max()))
    np.testing.assert_allclose(a[ok], e[ok], rtol=1e-9, atol=1e-12 * scale, err_msg=got.name)


# --- the Spark SQL (no Spark needed) ---------------------------------------------------------
def test_every_operator_has_a_spark_form_with_literal_frames():
    sql = spark_panel_sql(panel_outputs(SET, (21,)), (21,))
    tree = sqlglot.parse_one(sql, read="spark")
    bounds = [spec.args.get(side) for spec in tree.find_all(sqlglot.exp.WindowSpec)
              for side in ("start", "end")]  # fmt: skip
    assert bounds and all(isinstance(b, str | sqlglot.exp.Literal) for b in bounds)
    for duckdb_only in ("QUANTILE_CONT", "ARG_MAX", "LIST_"):
        assert duckdb_only not in sql.upper()
    assert "SORT_ARRAY(COLLECT_LIST(" in sql.upper()


# --- in Spark --------------------------------------------------------------------------------
@needs_spark
@pytest.mark.parametrize("operator", [*OPERATORS, "Quantile"])
def test_operator_equals_polars(panels, operator: str):
    got, expected = panels
    assert got.select("symbol", "date").equals(expected.select("symbol", "date"))
    names = [name for name in CASES if name.split("_")[0] == operator]
    assert len(names) >= len(INPUTS) * 3
    for name in names:
        _assert_close(got[name], expected[name])


@needs_spark
def test_the_cases_hold_ties_nulls_and_constant_windows(panels):
    _, expected = panels
    # a constant window: Skew and Kurt null past their lead, Mad 0
    first = expected.filter(pl.col("symbol") == "S00")
    assert first["Skew_vol_10"][20:40].is_null().all()
    assert first["Kurt_sign_10"][30:40].is_null().all()
    assert (first["Mad_vol_10"][20:40] == 0).all()
    # ties: days when today's up day is a window's max but an older one is the oldest max
    up = first["adj_close"] > first["adj_close"].shift(1)
    assert (up & (first["IdxMax_up_10"] < 10)).sum() > 20
    # nulls inside the windows of the index's return (the index misses a few days)
    assert expected["Rank_mkt_10"].null_count() > expected["Rank_close_10"].null_count() + 12


@needs_spark
@pytest.mark.slow
def test_alpha158_from_engine_features_equals_polars(spark, tmp_path: Path):
    archive = tmp_path / "archive"
    synthesize(archive, SynthSpec(n_symbols=8, start=date(2016, 1, 1), end=date(2018, 12, 31),
                                  seed=5))  # fmt: skip
    written = {}
    for engine in ("polars", "spark"):
        out = tmp_path / engine
        result = CliRunner().invoke(main, ["-q", "features", "--engine", engine, "--features",
                                           "alpha158", "--data-path", str(archive),
                                           "--output-path", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        written[engine] = pl.read_parquet(out / "features.parquet")
    got, expected = written["spark"], written["polars"]
    values = [name for name, dtype in expected.schema.items() if dtype == pl.Float64]
    assert got.height == expected.height > 5000 and len(values) > 157
    assert got.drop(values).equals(expected.drop(values))  # keys, row counts, label ends
    for name in values:
        # 1e-9 absolute where a correlation cancels to ~0: Polars' covariance from sums
        # differs from Spark's covar_samp in its last digits there (tests/test_spark.py)
        scale = max(1.0, float(expected[name].abs().max() or 0.0))
        a, e = got[name].fill_null(np.nan).to_numpy(), expected[name].fill_null(np.nan).to_numpy()
        assert (np.isnan(a) == np.isnan(e)).all(), f"{name}: nulls differ"
        ok = ~np.isnan(e)
        np.testing.assert_allclose(a[ok], e[ok], rtol=1e-9, atol=1e-9 * scale, err_msg=name)
