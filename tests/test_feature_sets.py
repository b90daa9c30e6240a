"""Feature sets: core equals the hand-written features, alpha158 is Qlib's, Polars equals
DuckDB on whole sets, and user TOML files, good and bad."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from engine.data.archive import load_archive
from engine.features import FeatureError
from engine.features.alpha158 import alpha158
from engine.features.panel import expression_panel, panel_outputs
from engine.features.sets import DEFAULT_FEATURES, feature_set
from engine.features.sql_compiler import panel_sql
from tests.core_reference import feature_panel


@pytest.fixture(scope="module")
def archive(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_archive(small_archive, tmp_path_factory.mktemp("cache"))


def _duckdb(prices: pl.LazyFrame, index: pl.LazyFrame, name: str, min_history: int) -> pl.DataFrame:
    con = duckdb.connect()
    con.register("prices", prices.collect().to_arrow())
    con.register("index", index.collect().to_arrow())
    sql = panel_sql(panel_outputs(feature_set(name), (5, 21)), (5, 21), min_history)
    return pl.from_arrow(con.sql(sql).to_arrow_table())


def _assert_equal(a: pl.DataFrame, b: pl.DataFrame, rtol: float, column_atol: float = 0) -> None:
    """Equal columns and nulls; values to ``rtol``, and to ``column_atol`` times the column's
    largest |value| where a value cancels to ~0 (a correlation near 0)."""
    assert a.columns == b.columns
    for name in a.columns:
        x, y = a[name], b[name]
        if x.dtype != pl.Float64:
            assert x.equals(y), name
            continue
        assert x.is_null().equals(y.is_null()), name
        both = x.is_not_null()
        assert both.any(), name
        atol = column_atol * float(y.abs().max())
        np.testing.assert_allclose(
            x.filter(both), y.filter(both), rtol=rtol, atol=atol, err_msg=name
        )


def test_core_equals_the_hand_written_features(archive) -> None:
    """Same names, same values to 1e-12 relative, same nulls (e.g. volume_z_21d where the
    window's std is 0, beta where the index variance is at or below 1e-14) as the
    hand-written features core replaced (tests/core_reference.py, the oracle)."""
    core = feature_set("core")
    assert core.names == DEFAULT_FEATURES
    new = expression_panel(archive.prices, archive.index, core).collect()
    old = feature_panel(archive.prices, archive.index).collect()
    _assert_equal(new, old, rtol=1e-12)


@pytest.mark.parametrize("name", ["core", "alpha158"])
def test_whole_sets_polars_equal_duckdb(archive, name: str) -> None:
    prices = archive.prices.filter(pl.col("symbol").is_in(
        archive.prices.select(pl.col("symbol").unique().sort().head(12)).collect()["symbol"].implode()))  # fmt: skip
    polars = expression_panel(prices, archive.index, feature_set(name), (5, 21), 30).collect()
    sql = _duckdb(prices, archive.index, name, 30)
    assert polars.height == sql.height > 0
    _assert_equal(polars, sql, rtol=1e-9, column_atol=1e-9)


def test_alpha158_is_qlibs_minus_vwap() -> None:
    names = [name for name, _, _ in alpha158()]
    assert len(names) == len(set(names)) == 157
    assert names[:9] == ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"]
    assert names[9:12] == ["OPEN0", "HIGH0", "LOW0"] and "VWAP0" not in names
    assert {
        f"{g}{d}" for g in ("ROC", "RSQR", "IMXD", "VSUMD") for d in (5, 10, 20, 30, 60)
    } <= set(names)
    expressions = dict((n, e) for n, e, _ in alpha158())
    assert expressions["CORD20"] == "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 20)"
    assert feature_set("alpha158").names == tuple(names)


def test_user_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'mom_21 = "$close / Ref($close, 21) - 1"\n\n'
        "[vol_20]\n"
        'expression = "Std(Log($close / Ref($close, 1)), 20)"\n'
        'description = "20-day volatility"\n'
    )
    mine = feature_set(path)
    assert mine.names == ("mom_21", "vol_20")
    assert mine.descriptions == {"mom_21": "", "vol_20": "20-day volatility"}
    assert mine.expressions["vol_20"] == "Std(Log($close / Ref($close, 1)), 20)"


def test_one_expression_under_two_names(archive) -> None:
    """Equal trees are computed once and given to both names, in both engines."""
    from engine.features.sets import make_set

    twice = make_set("twice", [("a", "Mean($close, 5)", ""), ("b", "Mean($close,5)", "")])
    panel = expression_panel(archive.prices, archive.index, twice, (5,)).collect()
    assert panel["a"].drop_nulls().len() > 0 and panel["a"].equals(panel["b"].alias("a"))
    con = duckdb.connect()
    con.register("prices", archive.prices.collect().to_arrow())
    con.register("index", archive.index.collect().to_arrow())
    sql = pl.from_arrow(con.sql(panel_sql(panel_outputs(twice, (5,)), (5,))).to_arrow_table())
    assert sql["a"].equals(sql["b"].alias("a"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('x = "Mean($close, 5"', "factor 'x': at column 5: invalid syntax"),
        ('x = "Ref($close, -1)"', "factor 'x': at column 13: Ref: offset -1 reads the future"),
        ("x = 5", "factor 'x': expected a string expression or a table"),
        ('[x]\nexpr = "$close"', "factor 'x': unknown key 'expr'"),
        ("[x]\ndescription = 'd'", "factor 'x': expected expression = "),
        ('x = "$close"\nx = "$open"', "invalid TOML"),
        ('_x = "$close"', "factor name '_x': expected an identifier"),
        ('fwd_ret_5d = "$close"', "factor name 'fwd_ret_5d'"),
        ('"a b" = "$close"', "factor name 'a b'"),
        ("", "no factors defined"),
        ('mom = "$close"\nMOM = "$open"', "factor 'MOM' defined twice (names ignore case)"),
    ],
)
def test_bad_toml_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FeatureError) as caught:
        feature_set(path)
    assert "\n" not in str(caught.value)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_set_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match="unknown feature set 'alpha360'"):
        feature_set("alpha360")
    with pytest.raises(FeatureError, match="cannot read features file"):
        feature_set(tmp_path / "missing.toml")
