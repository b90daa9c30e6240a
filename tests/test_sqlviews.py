"""DuckDB views: parity with the Polars features, point in time, the persistent database,
and the read-only ad hoc connection."""

from __future__ import annotations

import itertools
import logging
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data.archive import Archive, load_archive
from engine.data.archive.spec import COMPANIES_SCHEMA
from engine.data.synth import SynthSpec, synthesize
from engine.features import panel as panel_module
from engine.features.panel import expression_panel
from engine.features.sets import DEFAULT_FEATURES, feature_set
from engine.views import database as sv
from engine.views.query import run_query
from tests.panels import random_panel

SPEC = SynthSpec(n_symbols=25, start=date(2016, 1, 4), end=date(2018, 6, 29))
PRICE_COLUMNS = ("adj_close", "close", "high", "low", "open", "volume")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    folder = tmp_path_factory.mktemp("archive")
    synthesize(folder, SPEC)
    return load_archive(folder, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def sources(archive: Archive) -> sv.Sources:
    return sv.Sources.find(archive.cache_dir)


def _polars_panel(prices: pl.LazyFrame, index: pl.LazyFrame) -> pl.DataFrame:
    return expression_panel(prices, index, feature_set("core")).collect()


def _duckdb_panel(sources: sv.Sources, columns: list[str]) -> pl.DataFrame:
    return pl.concat(sv.feature_batches(sources, columns))


def _sources_for(folder: Path, prices: pl.DataFrame, index: pl.DataFrame) -> sv.Sources:
    """Sources over frames written as a cache directory (companies empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    prices.write_parquet(folder / "prices.parquet")
    index.write_parquet(folder / "index.parquet")
    pl.DataFrame(schema=COMPANIES_SCHEMA).write_parquet(folder / "companies.parquet")
    return sv.Sources.find(folder)


def assert_same_panel(expected: pl.DataFrame, actual: pl.DataFrame, atol: float = 1e-9) -> None:
    """Same columns and keys; per column, identical null positions and values within atol."""
    assert actual.columns == expected.columns
    assert actual.select("date", "symbol").equals(expected.select("date", "symbol"))
    for name in expected.columns[2:]:
        want, got = expected[name], actual[name]
        assert got.is_null().equals(want.is_null()), f"{name}: null positions differ"
        if want.dtype.is_float():
            np.testing.assert_allclose(
                got.drop_nulls().to_numpy(), want.drop_nulls().to_numpy(),
                rtol=0, atol=atol, err_msg=name,
            )  # fmt: skip
        else:
            assert got.equals(want), name


# --- parity ----------------------------------------------------------------------------------
def test_duckdb_matches_polars_on_the_synthetic_archive(
    archive: Archive, sources: sv.Sources
) -> None:
    expected = _polars_panel(archive.prices, archive.index)
    actual = _duckdb_panel(sources, expected.columns)
    assert actual.height == archive.prices.select(pl.len()).collect().item()
    assert_same_panel(expected, actual)


def test_duckdb_batches_of_symbols_give_the_one_query_panel(
    archive: Archive, sources: sv.Sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    columns = _polars_panel(archive.prices, archive.index).columns
    whole = _duckdb_panel(sources, columns)
    monkeypatch.setattr(panel_module, "BATCH_ROWS", 2_000)
    with sv.connect(sources) as con:
        ranges = sv._symbol_ranges(con, panel_module.BATCH_ROWS)
    assert len(ranges) > 3 and all(a <= b for a, b in ranges)
    assert all(b < a for (_, b), (a, _) in itertools.pairwise(ranges))
    # DuckDB's window aggregates may combine partial states in another order: last bits
    assert_same_panel(whole, _duckdb_panel(sources, columns), atol=1e-12)


def test_duckdb_matches_polars_on_edge_cases(tmp_path: Path) -> None:
    """Index days missing (beta null while a gap is in the window), a constant-volume
    stretch (volume z null), a late listing."""
    prices, index = random_panel()
    expected = _polars_panel(prices.lazy(), index.lazy())
    actual = _duckdb_panel(_sources_for(tmp_path, prices, index), expected.columns)
    assert_same_panel(expected, actual)
    full_63 = expected.filter(pl.col("history_rows") > 63)
    assert full_63["beta_63d"].null_count() > 0  # index gaps inside beta windows
    full_21 = expected.filter(pl.col("history_rows") >= 21)
    assert full_21["volume_z_21d"].null_count() > 0  # the constant stretch: std 0


def test_a_flat_index_stretch_gives_no_beta_in_either_engine(tmp_path: Path) -> None:
    """63 index returns of exactly 0: var(m) is 0 (DuckDB's var_samp) or rounding residue
    (Polars' running sums, of either sign); both engines must say 'no beta'. Seed 2 is a
    case where, without ``VAR_FLOOR``, the residue is positive and beta comes out -0.375."""
    prices, index = random_panel(seed=2)
    flat = pl.int_range(pl.len()).is_between(150, 230)
    index = index.with_columns(pl.when(flat).then(1000.0).otherwise(pl.col("sp500")).alias("sp500"))
    expected = _polars_panel(prices.lazy(), index.lazy())
    inside = expected.filter(pl.col("date") == index.filter(flat)["date"][-1])
    assert inside["beta_63d"].null_count() == inside.height  # the whole window is flat
    assert inside["idio_vol_63d"].null_count() == inside.height
    actual = _duckdb_panel(_sources_for(tmp_path, prices, index), expected.columns)
    assert_same_panel(expected, actual)
    assert expected["beta_63d"].abs().max() < 10


def test_pandas_reference_computes_the_same_panel(archive: Archive) -> None:
    """The benchmark's pandas reference must compute what the engines compute."""
    from benchmarks.features_pandas import feature_panel as pandas_panel

    for prices, index in ((archive.prices.collect(), archive.index.collect()), random_panel()):
        expected = _polars_panel(prices.lazy(), index.lazy())
        frame = pl.from_pandas(pandas_panel(prices.to_pandas(), index.to_pandas()))
        ends = {c: pl.Date for c in frame.columns if c.startswith("label_end")}
        actual = frame.cast({"history_rows": pl.Int64, **ends})
        assert_same_panel(expected, actual)


def test_features_and_labels_views_split_the_panel(sources: sv.Sources) -> None:
    with duckdb.connect() as con:
        sv.create_views(con, sources)
        features = con.table("features").columns
        labels = con.table("labels").columns
        panel = con.table("feature_panel").columns
    assert features == ["date", "symbol", "adj_close", "history_rows", *DEFAULT_FEATURES]
    assert labels[:2] == ["date", "symbol"]
    assert all(c.startswith(("fwd_ret_", "label_end_")) for c in labels[2:])
    assert panel == features + labels[2:]


def test_unknown_feature_columns_are_refused(sources: sv.Sources) -> None:
    with pytest.raises(sv.QueryError, match="vol_10d"):
        _duckdb_panel(sources, ["date", "symbol", "vol_10d"])


# --- point in time ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline(
    archive: Archive, sources: sv.Sources
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Prices, index, and the DuckDB features computed from them."""
    prices = archive.prices.collect()
    index = archive.index.collect()
    columns = ["date", "symbol", *DEFAULT_FEATURES]
    return prices, index, _duckdb_panel(sources, columns)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), mode=st.sampled_from(["change", "delete"]))
def test_point_in_time_duckdb(baseline, tmp_path: Path, data: st.DataObject, mode: str) -> None:
    """Changing or deleting every row after t leaves every feature dated <= t unchanged."""
    prices, index, before = baseline
    days = prices["date"].unique().sort()
    t = days[data.draw(st.integers(min_value=30, max_value=len(days) - 2), label="cut")]
    names = sorted(prices["symbol"].unique())
    symbols = data.draw(st.sets(st.sampled_from(names), min_size=1), label="symbols")
    after = (pl.col("date") > t) & pl.col("symbol").is_in(list(symbols))
    if mode == "delete":
        moved_prices = prices.filter(~after)
        moved_index = index.filter(pl.col("date") <= t)
    else:
        moved_prices = prices.with_columns(
            pl.when(after).then(pl.col(c) * 1.7).otherwise(pl.col(c)).alias(c)
            for c in PRICE_COLUMNS
        )
        moved_index = index.with_columns(
            pl.when(pl.col("date") > t).then(pl.col("sp500") * 0.5).otherwise(pl.col("sp500"))
        )
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        moved_sources = _sources_for(Path(folder), moved_prices, moved_index)
        moved = _duckdb_panel(moved_sources, before.columns)
    a = before.filter(pl.col("date") <= t)
    b = moved.filter(pl.col("date") <= t)
    assert a.select("date", "symbol").equals(b.select("date", "symbol"))
    for name in DEFAULT_FEATURES:
        assert a[name].is_null().equals(b[name].is_null()), name
        np.testing.assert_allclose(
            b[name].to_numpy(), a[name].to_numpy(), rtol=1e-12, atol=1e-15, err_msg=name
        )


# --- the persistent database -----------------------------------------------------------------
def test_persistent_database_is_built_once_and_queryable_directly(
    sources: sv.Sources, tmp_path: Path
) -> None:
    path = sv.ensure_database(tmp_path / "engine.duckdb", sources)
    inode = path.stat().st_ino
    assert sv.ensure_database(path, sources).stat().st_ino == inode  # current: not rebuilt
    with duckdb.connect(str(path), read_only=True) as con:  # no engine code: plain DuckDB
        count = con.sql("select count(*) from features where vol_63d is not null").fetchall()
        views = {r[0] for r in con.sql("select view_name from duckdb_views()").fetchall()}
    assert count[0][0] > 0
    assert {"prices", "index", "companies", "features", "labels", "feature_panel"} <= views
    assert not list(tmp_path.glob(".*.tmp*"))


def test_persistent_database_is_rebuilt_when_its_sources_change(
    archive: Archive, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    path = sv.ensure_database(out / "engine.duckdb", sv.Sources.find(archive.cache_dir, out))
    inode = path.stat().st_ino
    _write_run_outputs(out, "ridge")
    rebuilt = sv.ensure_database(path, sv.Sources.find(archive.cache_dir, out))
    assert rebuilt.stat().st_ino != inode  # a new file renamed into place
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.sql("select distinct model from portfolio").fetchall() == [("ridge",)]


def test_a_corrupt_database_file_is_rebuilt(sources: sv.Sources, tmp_path: Path) -> None:
    path = tmp_path / "engine.duckdb"
    path.write_bytes(b"not a database")
    sv.ensure_database(path, sources)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.sql("select count(*) from prices").fetchall()[0][0] > 0


# --- run outputs -------------------------------------------------------------------------------
def _write_run_outputs(out: Path, model: str) -> None:
    day = [date(2018, 1, 31), date(2018, 2, 28)]
    pl.DataFrame(
        {"date": day, "symbol": ["AAA", "BBB"], "weight": [0.5, 0.5], "score": [1.0, 0.5]}
    ).write_csv(out / f"holdings_{model}.csv")
    pl.DataFrame(
        {"symbol": ["AAA"], "name": ["A Inc"], "sector": ["Energy"], "weight": [1.0],
         "score": [1.0]}
    ).write_csv(out / f"portfolio_{model}.csv")  # fmt: skip
    curves = {c: [0.01, -0.02] for c in ("gross", "net", "turnover", "index", "universe")}
    equity = {f"equity_{c}": [1.01, 0.99] for c in ("gross", "net", "index", "universe")}
    pl.DataFrame({"date": day, **curves, **equity}).write_csv(out / f"equity_{model}.csv")


def test_output_views_appear_with_their_files(archive: Archive, tmp_path: Path) -> None:
    _write_run_outputs(tmp_path, "ridge")
    _write_run_outputs(tmp_path, "random_forest")
    pl.DataFrame({"date": [date(2018, 1, 31)], "symbol": ["AAA"], "score": [0.3]}).write_parquet(
        tmp_path / "predictions_ridge.parquet"
    )
    sources = sv.Sources.find(archive.cache_dir, tmp_path)
    assert set(sources.outputs) == {"portfolio", "backtest", "latest_portfolio", "predictions"}
    con = sv.open_read_only(sv.ensure_database(tmp_path / "engine.duckdb", sources), sources)
    try:
        models = run_query(con, "select distinct model from portfolio order by 1").frame
        backtest = run_query(con, "select * from backtest where model = 'random_forest'").frame
        predictions = run_query(con, "select * from predictions").frame
    finally:
        con.close()
    assert models["model"].to_list() == ["random_forest", "ridge"]
    assert backtest.columns[:3] == ["model", "date", "gross_return"]
    assert backtest.schema["date"] == pl.Date and backtest.height == 2
    assert predictions.columns == ["model", "date", "symbol", "score"]


def test_an_output_of_another_layout_is_left_out(
    archive: Archive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="engine")
    _write_run_outputs(tmp_path, "ridge")
    (tmp_path / "equity_ridge.csv").unlink()
    pl.DataFrame({"day": [1], "value": [2.0]}).write_csv(tmp_path / "equity_lasso.csv")
    sources = sv.Sources.find(archive.cache_dir, tmp_path)
    with duckdb.connect() as con:
        sv.create_views(con, sources)
        views = {r[0] for r in con.sql("select view_name from duckdb_views()").fetchall()}
    assert "backtest" not in views and {"portfolio", "features"} <= views
    assert "view backtest left out" in caplog.text


# --- read-only ad hoc queries ------------------------------------------------------------------
@pytest.fixture(scope="module")
def read_only(archive: Archive, sources: sv.Sources, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("readonly")
    database = sv.ensure_database(folder / "engine.duckdb", sources)
    con = sv.open_read_only(database, sources)
    yield con, folder
    con.close()


def test_read_only_connection_answers_queries(read_only) -> None:
    con, _ = read_only
    result = run_query(con, "select symbol, count(*) as n from prices group by all order by 1")
    assert result.frame.height == SPEC.n_symbols and result.complete
    described = run_query(con, "describe features").frame
    assert described["column_name"].to_list()[:2] == ["date", "symbol"]


ESCAPES = {
    "copy to a new file": "copy (select 1 as x) to '{folder}/leak.csv'",
    "copy over an allowed file": "copy (select 1 as x) to '{prices}' (format parquet, use_tmp_file false)",
    "explain analyze copy": "explain analyze copy (select 1 as x) to '{folder}/leak.csv'",
    "read /etc/passwd": "select * from read_csv('/etc/passwd', sep = ':')",
    "read_text": "select * from read_text('/etc/passwd')",
    "glob": "select * from glob('/*')",
    "attach a file": "attach '{folder}/other.duckdb' as other",
    "attach in memory": "attach ':memory:' as scratch",
    "install": "install httpfs",
    "load": "load httpfs",
    "set external access": "set enable_external_access = true",
    "set allowed paths": "set allowed_paths = ['/etc/passwd']",
    "create table": "create table leak as select 1 as x",
    "create view": "create view leak as select 1 as x",
    "export database": "export database '{folder}/export'",
    "two statements": "select 1; copy (select 1 as x) to '{folder}/leak.csv'",
}  # fmt: skip


@pytest.mark.parametrize("query", ESCAPES.values(), ids=ESCAPES.keys())
def test_read_only_connection_refuses_escapes(read_only, sources: sv.Sources, query: str) -> None:
    con, folder = read_only
    prices = sources.tables["prices"]
    before = prices.read_bytes()
    with pytest.raises(sv.QueryError):
        run_query(con, query.format(folder=folder, prices=prices))
    assert prices.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["engine.duckdb"]


DUCKDB_REFUSES = {
    "read /etc/passwd": "select * from read_csv('/etc/passwd', sep = ':')",
    "copy to a new file": "copy (select 1 as x) to '{folder}/leak.csv'",
    "attach a file": "attach '{folder}/other.duckdb' as other",
    "install": "install httpfs",
    "load": "load httpfs",
    "set external access": "set enable_external_access = true",
    "reset external access": "reset enable_external_access",
    "unlock": "set lock_configuration = false",
    "create table": "create table leak as select 1 as x",
}


@pytest.mark.parametrize("query", DUCKDB_REFUSES.values(), ids=DUCKDB_REFUSES.keys())
def test_duckdb_itself_refuses_escapes(read_only, query: str) -> None:
    """The DuckDB settings hold without the statement check in ``run_query``."""
    con, folder = read_only
    with pytest.raises(duckdb.Error):
        con.execute(query.format(folder=folder)).fetchall()
    settings = dict(
        con.sql(
            "select name, value from duckdb_settings() where name in "
            "('enable_external_access', 'lock_configuration', 'autoload_known_extensions')"
        ).fetchall()
    )
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoload_known_extensions": "false",
    }


def test_queries_cannot_scan_python_objects(read_only) -> None:
    con, _ = read_only
    secret = pl.DataFrame({"x": [1]})
    assert secret.height == 1
    with pytest.raises(sv.QueryError, match="secret"):
        run_query(con, "select * from secret")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("selec 1", "syntax error"),
        ("select nope from prices", "nope"),
        ("select * from portfolio", "engine run"),
        ("select * from no_such_view", "no_such_view"),
        ("", "exactly one"),
    ],
)
def test_query_errors_are_one_line(read_only, query: str, message: str) -> None:
    con, _ = read_only
    with pytest.raises(sv.QueryError, match=message) as info:
        run_query(con, query)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_write_frame_round_trips(fmt: str, tmp_path: Path) -> None:
    frame = pl.DataFrame({"date": [date(2018, 1, 2)], "symbol": ["AAA"], "x": [0.5]})
    path = sv.write_frame(frame, tmp_path / f"out.{fmt}", fmt)
    read = {"csv": pl.read_csv, "json": pl.read_json, "parquet": pl.read_parquet}[fmt](path)
    assert read["symbol"].to_list() == ["AAA"] and read["x"].to_list() == [0.5]
    assert [p.name for p in tmp_path.iterdir()] == [f"out.{fmt}"]


def test_an_unwritable_database_path_is_one_clear_error(
    sources: sv.Sources, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(sv.QueryError, match="cannot write"):
        sv.ensure_database(blocker / "engine.duckdb", sources)
