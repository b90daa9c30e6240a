"""Tests for engine.data.synth: format identity with the Kaggle archive, determinism, atomic writes,
forward simulation, and the planted (and absent) momentum signal.

Tolerances of the signal tests come from 30 seeds of the 200-symbol 2012-2019 panel:
the per-seed sd of a mean rank IC under the null is ~0.009 (12-1 momentum, 252-day return,
21-day vol) and ~0.006 (21-day return); the difference IC(signal) - IC(0) on the same seed
(same shocks) has sd ~0.001.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import holidays
import numpy as np
import polars as pl
import pytest

from engine import schema
from engine.data.synth import SynthSpec, signal_k, synth_frames, synthesize

SMALL = SynthSpec(n_symbols=60, start=dt.date(2018, 1, 1), end=dt.date(2019, 6, 28), seed=3)
PANEL = {"n_symbols": 200, "start": dt.date(2012, 1, 2), "end": dt.date(2019, 12, 31)}
PRICES = ["Adj Close", "Close", "High", "Low", "Open"]
NUMERIC = [*PRICES, "Volume"]


# --- measurement (polars only, independent of other engine modules) -----------------------
def features(stocks: pl.DataFrame) -> pl.LazyFrame:
    """Per-symbol row-counted features and the forward 21-row return, leading nulls dropped."""
    adj = pl.col("Adj Close")
    return (
        stocks.lazy()
        .drop_nulls("Adj Close")
        .sort("Symbol", "Date")
        .with_columns(
            mom_12_1=(adj.shift(21) / adj.shift(252) - 1).over("Symbol"),
            ret_21=(adj / adj.shift(21) - 1).over("Symbol"),
            ret_252=(adj / adj.shift(252) - 1).over("Symbol"),
            vol_21=adj.log().diff().rolling_std(21).over("Symbol"),
            fwd_21=(adj.shift(-21) / adj - 1).over("Symbol"),
        )
    )


def rank_ic(lf: pl.LazyFrame, feature: str) -> tuple[float, float]:
    """Mean per-date Spearman IC of ``feature`` vs ``fwd_21``, and its t-stat over every 21st
    date (non-overlapping forward windows)."""
    per_date = (
        lf.drop_nulls([feature, "fwd_21"])
        .group_by("Date")
        .agg(ic=pl.corr(feature, "fwd_21", method="spearman"), n=pl.len())
        .filter(pl.col("n") >= 10)
        .sort("Date")
        .collect()["ic"]
        .to_numpy()
    )
    monthly = per_date[::21]
    return float(per_date.mean()), float(
        monthly.mean() / monthly.std(ddof=1) * np.sqrt(monthly.size)
    )


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, SMALL)
    return out


@pytest.fixture(scope="module")
def raw_stocks(small_dir: Path) -> pl.DataFrame:
    """The stocks file as text, to check formatting."""
    return pl.read_csv(small_dir / schema.STOCKS_FILE, infer_schema=False)


@pytest.fixture(scope="module")
def stocks(small_dir: Path) -> pl.DataFrame:
    return pl.read_csv(small_dir / schema.STOCKS_FILE, try_parse_dates=True)


@pytest.fixture(scope="module")
def companies(small_dir: Path) -> pl.DataFrame:
    return pl.read_csv(small_dir / schema.COMPANIES_FILE)


@pytest.fixture(scope="module")
def panel_ics() -> dict[float, dict[str, tuple[float, float]]]:
    """Rank ICs on the 200-symbol panel for signal = 0, 0.04 and -0.04 (same seed, same shocks)."""
    out = {}
    for signal in (0.0, 0.04, -0.04):
        lf = features(synth_frames(SynthSpec(**PANEL, signal=signal))[0])
        out[signal] = {f: rank_ic(lf, f) for f in ("mom_12_1", "ret_21", "ret_252", "vol_21")}
    return out


# --- determinism and atomic writing -------------------------------------------------------
def test_same_spec_gives_identical_bytes(small_dir: Path, tmp_path: Path) -> None:
    paths = synthesize(tmp_path, SMALL)
    assert set(paths) == set(schema.ARCHIVE_FILES)
    for name, path in paths.items():
        assert path.read_bytes() == (small_dir / name).read_bytes(), name


def test_different_seed_gives_different_files(small_dir: Path, tmp_path: Path) -> None:
    paths = synthesize(tmp_path, replace(SMALL, seed=4))
    for name, path in paths.items():
        assert path.read_bytes() != (small_dir / name).read_bytes(), name


def test_no_temp_files_remain(small_dir: Path) -> None:
    assert sorted(p.name for p in small_dir.iterdir()) == sorted(schema.ARCHIVE_FILES)


def test_failed_write_keeps_old_file_and_leaves_no_temp(
    small_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthesize(tmp_path, SMALL)
    before = (tmp_path / schema.STOCKS_FILE).read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        synthesize(tmp_path, replace(SMALL, seed=9), overwrite=True)
    assert (tmp_path / schema.STOCKS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(schema.ARCHIVE_FILES)


def test_out_dir_is_created(tmp_path: Path) -> None:
    spec = SynthSpec(n_symbols=3, start=dt.date(2020, 1, 1), end=dt.date(2020, 1, 31))
    paths = synthesize(tmp_path / "a" / "b", spec)
    assert all(p.is_file() for p in paths.values())


# --- format identity ----------------------------------------------------------------------
def test_headers_are_the_kaggle_headers(small_dir: Path) -> None:
    for name, cols in [
        (schema.STOCKS_FILE, schema.STOCKS_COLUMNS),
        (schema.COMPANIES_FILE, schema.COMPANIES_COLUMNS),
        (schema.INDEX_FILE, schema.INDEX_COLUMNS),
    ]:
        with open(small_dir / name) as fh:
            assert fh.readline().rstrip("\n") == ",".join(cols)
    assert ",".join(schema.INDEX_COLUMNS) == "Date,S&P500"


def test_every_symbol_has_every_nyse_trading_day(raw_stocks: pl.DataFrame) -> None:
    closed = holidays.financial_holidays("NYSE", years=range(SMALL.start.year, SMALL.end.year + 1))
    days = pl.date_range(SMALL.start, SMALL.end, "1d", eager=True)
    days = days.filter((days.dt.weekday() <= 5) & ~days.is_in(list(closed)))
    days = days.dt.to_string("%Y-%m-%d")
    for closed_day in ("2018-12-25", "2018-11-22", "2018-12-05"):  # Christmas, Thanksgiving,
        assert closed_day not in days  # and the national day of mourning for G. H. W. Bush
    assert "2018-12-24" in days and days.str.starts_with("2018").sum() == 251
    syms = sorted(raw_stocks["Symbol"].unique())
    assert raw_stocks.height == len(syms) * days.len() and len(syms) == SMALL.n_symbols
    expected = pl.DataFrame(
        {"Symbol": np.repeat(syms, days.len()), "Date": pl.concat([days] * len(syms))}
    )
    assert raw_stocks.select("Symbol", "Date").equals(
        expected
    )  # grouped by symbol, dates ascending
    assert raw_stocks["Date"].str.contains(r"^\d{4}-\d{2}-\d{2}$").all()


def test_leading_empty_rows_only_before_listing(raw_stocks: pl.DataFrame, small_dir: Path) -> None:
    empty = raw_stocks.select(pl.all_horizontal(pl.col(NUMERIC).is_null()).alias("e"), "Symbol")
    some = raw_stocks.select(pl.any_horizontal(pl.col(NUMERIC).is_null())).to_series()
    assert (some == empty["e"]).all()  # all six fields empty together, or none
    per = empty.group_by("Symbol").agg(n=pl.col("e").sum(), prefix=pl.col("e").cum_min().sum())
    assert (per["n"] == per["prefix"]).all()  # empty rows form a leading block
    assert (per["n"] > 0).sum() == int(SMALL.late_listing_fraction * SMALL.n_symbols)
    text = (small_dir / schema.STOCKS_FILE).read_text()
    assert re.search(r"\n\d{4}-\d{2}-\d{2},[A-Z-]+,,,,,,\n", text)


def test_numbers_are_plain_decimals_and_volume_has_dot_zero(raw_stocks: pl.DataFrame) -> None:
    listed = raw_stocks.drop_nulls("Close")
    assert listed["Volume"].str.contains(r"^\d+\.0$").all()
    for col in PRICES:
        assert listed[col].str.contains(r"^\d+\.\d+$").all(), col


def test_ohlc_and_adjusted_close_are_consistent(stocks: pl.DataFrame) -> None:
    s = stocks.drop_nulls("Close")
    checks = s.select(
        high=pl.col("High") >= pl.max_horizontal("Open", "Close"),
        low=pl.col("Low") <= pl.min_horizontal("Open", "Close"),
        positive=(pl.col("Low") > 0) & (pl.col("Volume") > 0),
        adjusted=pl.col("Close") >= pl.col("Adj Close"),
    )
    assert checks.select(pl.all().all()).row(0) == (True, True, True, True)
    last = s.filter(pl.col("Date") == pl.col("Date").max())
    assert (last["Close"] == last["Adj Close"]).all()
    first = s.filter(pl.col("Date") == pl.col("Date").min())
    assert (first["Close"] > first["Adj Close"]).mean() > 0.5  # dividends paid since


def test_companies(companies: pl.DataFrame, stocks: pl.DataFrame, small_dir: Path) -> None:
    assert companies.columns == list(schema.COMPANIES_COLUMNS) and companies.width == 16
    assert sorted(companies["Symbol"]) == sorted(stocks["Symbol"].unique())
    assert companies["Symbol"].str.contains(r"^[A-Z]{1,5}(-[A-Z])?$").all()
    assert companies["Symbol"].str.contains("-").sum() == 2
    assert set(companies["Sector"]) == set(schema.SECTORS)
    assert set(companies["Exchange"]) <= {"NMS", "NYQ"}
    last = stocks.drop_nulls("Close").group_by("Symbol").agg(pl.col("Close").last())
    joined = companies.join(last, on="Symbol")
    assert (joined["Currentprice"] == joined["Close"]).all()
    assert companies["Weight"].sum() == pytest.approx(1.0)
    assert np.allclose(companies["Weight"], companies["Marketcap"] / companies["Marketcap"].sum())
    assert companies["Marketcap"].is_sorted(descending=True)
    assert '"' in (small_dir / schema.COMPANIES_FILE).read_text()  # summaries with commas


def test_index_is_cap_weighted_price_index(
    small_dir: Path, stocks: pl.DataFrame, companies: pl.DataFrame
) -> None:
    index = pl.read_csv(small_dir / schema.INDEX_FILE, try_parse_dates=True)
    assert index["Date"].to_list() == stocks["Date"].unique().sort().to_list()
    assert index["S&P500"][0] == 1100.0
    # rebuild it: constant shares (Marketcap / Currentprice), weights = caps at t-1, Close returns
    shares = companies.select("Symbol", shares=pl.col("Marketcap") / pl.col("Currentprice"))
    prev_cap = (pl.col("Close") * pl.col("shares")).shift(1).over("Symbol")
    ret = (pl.col("Close") / pl.col("Close").shift(1) - 1).over("Symbol")
    rebuilt = (
        stocks.join(shares, on="Symbol")
        .sort("Symbol", "Date")
        .with_columns(cap=prev_cap, r=ret)
        .drop_nulls(["cap", "r"])
        .group_by("Date")
        .agg(g=1 + (pl.col("cap") * pl.col("r")).sum() / pl.col("cap").sum())
        .sort("Date")
    )
    level = 1100 * np.cumprod(rebuilt["g"].to_numpy())
    assert np.allclose(level, index["S&P500"][1:], rtol=1e-4)


def test_truncating_end_leaves_earlier_prices_unchanged() -> None:
    """Paths are simulated forward: no price depends on how long the panel runs."""
    spec = SynthSpec(
        n_symbols=30,
        start=dt.date(2015, 1, 1),
        end=dt.date(2017, 12, 29),
        seed=5,
        late_listing_fraction=0,
    )
    short = replace(spec, end=dt.date(2016, 12, 30))
    (long_s, _, long_i), (short_s, _, short_i) = synth_frames(spec), synth_frames(short)
    common = long_s.join(short_s, on=["Date", "Symbol"], suffix="_s")
    assert common.height == short_s.height
    assert np.allclose(common["Close"], common["Close_s"], rtol=0, atol=2e-6)
    both = (
        common.sort("Symbol", "Date")
        .select(
            a=pl.col("Adj Close").log().diff().over("Symbol"),
            b=pl.col("Adj Close_s").log().diff().over("Symbol"),
        )
        .drop_nulls()
    )
    assert np.allclose(both["a"], both["b"], rtol=0, atol=1e-4)
    assert np.allclose(long_i["S&P500"][: short_i.height], short_i["S&P500"], atol=0.011)


def test_planted_drift_is_k_times_yesterdays_momentum_score() -> None:
    """Same shocks with and without the signal: day t's extra log return is exactly
    k * Phi^-1((rank - 1/2) / n) of 12-1 momentum at t-1, ranked over symbols with >= 253 rows."""
    spec = SynthSpec(
        n_symbols=40, start=dt.date(2016, 1, 1), end=dt.date(2017, 12, 29), seed=1, signal=0.5
    )
    adj, inv_cdf = pl.col("Adj Close"), np.vectorize(NormalDist().inv_cdf)
    with_signal, null = synth_frames(spec)[0], synth_frames(replace(spec, signal=0.0))[0]
    both = (
        with_signal.join(null, on=["Date", "Symbol"], suffix="_null")
        .drop_nulls("Adj Close")
        .sort("Symbol", "Date")
        .with_columns(
            m=(adj.shift(21) / adj.shift(252) - 1).over("Symbol"),
            extra=(adj.log().diff() - pl.col("Adj Close_null").log().diff()).over("Symbol"),
        )
        .with_columns(
            u=(pl.col("m").rank("ordinal") - 0.5).over("Date") / pl.col("m").count().over("Date")
        )
    )
    z = pl.Series("z", inv_cdf(both["u"].fill_null(0.5).to_numpy()))  # 0 where m is undefined
    both = both.with_columns(z).with_columns(z_prev=pl.col("z").shift(1).over("Symbol"))
    both = both.drop_nulls(["extra", "z_prev"])
    assert (both["z_prev"] != 0).sum() > 1000  # the signal is live on many rows
    assert np.allclose(both["extra"], signal_k(0.5) * both["z_prev"], rtol=0, atol=1e-5)


# --- spec validation ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_symbols": 0},
        {"start": dt.date(2020, 1, 2), "end": dt.date(2020, 1, 1)},
        {"start": dt.date(2022, 1, 1), "end": dt.date(2022, 1, 2)},  # a weekend only
        {"signal": 0.51},
        {"signal": -0.6},
        {"signal": float("nan")},
        {"late_listing_fraction": 1.0},
        {"late_listing_fraction": -0.1},
    ],
)
def test_bad_spec_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SynthSpec(**kwargs)


@pytest.mark.parametrize("n_symbols,end", [(1, dt.date(2020, 1, 2)), (5, dt.date(2020, 3, 31))])
def test_tiny_specs_work(n_symbols: int, end: dt.date) -> None:
    spec = SynthSpec(n_symbols=n_symbols, start=dt.date(2020, 1, 1), end=end, signal=0.3)
    stocks, companies, index = synth_frames(spec)
    assert companies.height == n_symbols and stocks.height == n_symbols * index.height


# --- the planted signal and the null ------------------------------------------------------
@pytest.mark.parametrize("signal", [0.04, -0.04])
def test_planted_momentum_ic(panel_ics: dict, signal: float) -> None:
    ic, t = panel_ics[signal]["mom_12_1"]
    assert abs(ic - signal) < 0.025 and np.sign(ic) == np.sign(signal) and abs(t) > 3
    # same shocks with and without the signal: the planted part alone is precise (sd ~0.001)
    assert ic - panel_ics[0.0]["mom_12_1"][0] == pytest.approx(signal, abs=0.005)


@pytest.mark.parametrize("feature", ["mom_12_1", "ret_21", "ret_252", "vol_21"])
def test_null_dataset_predicts_nothing(panel_ics: dict, feature: str) -> None:
    ic, t = panel_ics[0.0][feature]
    assert abs(ic) < 0.025 and abs(t) < 3


@pytest.mark.slow
@pytest.mark.parametrize("signal", [0.04, 0.0])
def test_default_size_ic_within_001(signal: float) -> None:
    stocks = synth_frames(SynthSpec(signal=signal))[0]
    assert stocks.height == 503 * 3768  # NYSE trading days, 2010-01-04 to 2024-12-20
    ic, _ = rank_ic(features(stocks), "mom_12_1")
    assert ic == pytest.approx(signal, abs=0.01)
