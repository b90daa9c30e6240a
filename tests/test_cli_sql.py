"""`engine features` and `engine sql` through click's CliRunner, on a small synthetic archive."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.data.synth import SynthSpec, synthesize
from engine.features.alpha158 import alpha158
from engine.features.sets import DEFAULT_FEATURES
from tests.test_sqlviews import assert_same_panel

SPEC = SynthSpec(n_symbols=25, start=date(2016, 1, 4), end=date(2018, 6, 29))
LABELS = ["fwd_ret_5d", "fwd_ret_21d", "fwd_ret_63d"]
LABEL_ENDS = ["label_end_5d", "label_end_21d", "label_end_63d"]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    synthesize(folder, SPEC)
    return folder


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def invoke(data_path: Path, cache_path: Path, tmp_path: Path):
    """Run ``engine <args>`` on the archive with OUTPUT_PATH = tmp_path/out."""

    def run(*args: str) -> Result:
        paths = ["--data-path", str(data_path), "--cache-path", str(cache_path),
                 "--output-path", str(tmp_path / "out")]  # fmt: skip
        return CliRunner().invoke(main, [*args, *paths], catch_exceptions=False)

    return run


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("engine: error: "), result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


# --- engine features ---------------------------------------------------------------------------
def test_features_polars_and_duckdb_write_the_same_file(invoke, tmp_path: Path) -> None:
    path = tmp_path / "out" / "features.parquet"
    result = invoke("features")
    assert result.exit_code == 0, result.output
    assert "polars" in result.stdout and str(path) in result.stdout
    polars = pl.read_parquet(path)
    result = invoke("features", "--engine", "duckdb")
    assert result.exit_code == 0, result.output
    duck = pl.read_parquet(path)
    expected = ["date", "symbol", "adj_close", "history_rows", *DEFAULT_FEATURES, *LABELS,
                *LABEL_ENDS]  # fmt: skip
    assert polars.columns == expected
    assert polars.select("symbol", "date").equals(
        polars.select("symbol", "date").sort("symbol", "date")
    )
    assert_same_panel(polars, duck)
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_features_are_written_batch_by_batch(invoke, tmp_path, monkeypatch, engine) -> None:
    """Small batches of whole symbols reach the file one at a time, and the file is the
    panel computed in one piece (to float rounding: rolling sums restart per batch)."""
    from engine.features import panel
    from engine.views import database as sqlviews

    result = invoke("features", "--engine", engine)
    assert result.exit_code == 0, result.output
    whole = pl.read_parquet(tmp_path / "out" / "features.parquet")
    monkeypatch.setattr(panel, "BATCH_ROWS", 3_000)
    heights, real = [], sqlviews.sink_parquet
    monkeypatch.setattr(sqlviews, "sink_parquet", lambda frames, *rest: real(
        (heights.append(f.height) or f for f in frames), *rest))  # fmt: skip
    result = invoke("features", "--engine", engine)
    assert result.exit_code == 0, result.output
    batched = pl.read_parquet(tmp_path / "out" / "features.parquet")
    assert len(heights) > 4 and max(heights) < 3_000 + 700 and sum(heights) == whole.height
    assert batched.select("symbol", "date").equals(whole.select("symbol", "date"))
    assert_same_panel(batched, whole)


FACTORS = """
mom_10 = "$close / Ref($close, 10) - 1"

[hl_vol]
expression = "Std(($high - $low) / $close, 10)"
description = "10-day std of the day's range"
"""


@pytest.fixture
def factor_file(tmp_path: Path) -> Path:
    path = tmp_path / "factors.toml"
    path.write_text(FACTORS)
    return path


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_features_of_a_user_file(invoke, tmp_path: Path, factor_file: Path, engine: str) -> None:
    result = invoke("features", "--features", str(factor_file), "--engine", engine)
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(tmp_path / "out" / "features.parquet")
    assert frame.columns[4:7] == ["mom_10", "hl_vol", "fwd_ret_5d"]
    assert frame["hl_vol"].null_count() < frame.height


def test_features_from_the_environment(data_path, cache_path, tmp_path, factor_file) -> None:
    args = ["features", "--data-path", str(data_path), "--cache-path", str(cache_path),
            "--output-path", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner(env={"FEATURE_SET": str(factor_file)}).invoke(main, args)
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "out" / "features.parquet").columns[4:6] == [
        "mom_10", "hl_vol"]  # fmt: skip


def test_features_list_prints_names_and_expressions(invoke) -> None:
    result = invoke("features", "--list", "alpha158")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "# alpha158: 157 factors"
    listed = dict(line.split(" = ", 1) for line in lines[1:])
    assert {k.strip(): v for k, v in listed.items()} == {n: e for n, e, _ in alpha158()}
    core = invoke("features", "--list").stdout.splitlines()
    assert core[0] == "# core: 18 factors" and core[1].split()[0] == "ret_1d"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [('x = "Mean($close, 0)"', ["factor 'x'", "window"]),
     ('x = "Mean($close 5)"', ["factor 'x'", "column"]),
     ('x = "Ref($close, -1)"', ["factor 'x'", "future"]),
     ('x = "Foo($close)"', ["factor 'x'", "unknown"]),
     ('x = "$vwap"', ["factor 'x'", "vwap"]),
     ("x = [", ["invalid TOML"])],
)  # fmt: skip
def test_bad_expressions_are_one_line_errors(invoke, tmp_path, text: str, fragments) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    for command in (["features"], ["features", "--list"], ["sql", "select 1"]):
        result = invoke(*command, "--features", str(path))
        assert_one_line_error(result, str(path), *fragments)


def test_an_unknown_set_is_a_one_line_error(invoke) -> None:
    assert_one_line_error(invoke("features", "--features", "alpha360"), "alpha360", "core")


def test_sql_shows_the_chosen_set(invoke, factor_file: Path) -> None:
    result = invoke("sql", "select * from features limit 5", "--features", str(factor_file),
                    "--format", "csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split(",")
    assert header == ["date", "symbol", "adj_close", "history_rows", "mom_10", "hl_vol"]


# --- engine sql -------------------------------------------------------------------------------
def test_sql_prints_a_table(invoke) -> None:
    result = invoke("sql", "select symbol, count(*) as n from prices group by all order by n, 1")
    assert result.exit_code == 0, result.output
    assert "symbol" in result.stdout and "│" in result.stdout
    assert result.stdout.rstrip().endswith(f"{SPEC.n_symbols} rows x 2 columns")


def test_sql_builds_the_persistent_database(invoke, tmp_path: Path) -> None:
    assert invoke("sql", "select 1 as x").exit_code == 0
    assert (tmp_path / "out" / "engine.duckdb").is_file()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_sql_writes_a_file(invoke, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"result.{fmt}"
    query = "select date, symbol, vol_21d from features where vol_21d is not null limit 7"
    result = invoke("sql", query, "--format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    read = {"csv": pl.read_csv, "json": pl.read_json, "parquet": pl.read_parquet}[fmt]
    frame = read(out)
    assert frame.columns == ["date", "symbol", "vol_21d"] and frame.height == 7
    if fmt == "json":
        assert isinstance(json.loads(out.read_text()), list)


def test_sql_format_follows_the_out_suffix(invoke, tmp_path: Path) -> None:
    out = tmp_path / "result.parquet"
    assert invoke("sql", "select 1 as x", "--out", str(out)).exit_code == 0
    assert pl.read_parquet(out)["x"].to_list() == [1]


def test_sql_prints_csv(invoke) -> None:
    result = invoke("sql", "select 1 as x, 'a' as y", "--format", "csv")
    assert result.exit_code == 0 and result.stdout == "x,y\n1,a\n"


def test_sql_reads_the_query_from_a_file(invoke, tmp_path: Path) -> None:
    query = tmp_path / "query.sql"
    query.write_text("-- the highest beta\nselect symbol, max(beta_63d) as beta\nfrom features\n"
                     "group by symbol order by beta desc limit 3;\n")  # fmt: skip
    result = invoke("sql", "--file", str(query))
    assert result.exit_code == 0, result.output
    assert "beta" in result.stdout and "3 rows x 2 columns" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("selec 1",), "syntax error"),
        (("select * from no_such_view",), "no_such_view"),
        (("select * from portfolio",), "engine run"),
        (("copy (select 1) to 'x.csv'",), "only SELECT"),
        (("select * from read_csv('/etc/passwd')",), "Permission Error"),
        (("create table t as select 1",), "only SELECT"),
        ((), "not both or neither"),
        (("select 1", "--format", "parquet"), "--out"),
        (("select 1", "--out", "result.txt"), "--format"),
    ],
)
def test_sql_errors_are_one_line(invoke, args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(invoke("sql", *args), fragment)
