"""The score as a signal: forward returns, IC table, IC decay, quintile returns."""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import polars as pl
import pytest

from engine.research.backtest import Market
from engine.research.signal import (
    excess_tables,
    forward_returns,
    ic_decay,
    ic_table,
    quintile_returns,
    quintile_spread,
)
from tests.synthetic_market import synthetic_market


def two_name_market() -> Market:
    """Four days; A: +10 %, +10 %, -50 % on days 1-3; B: 0, missing, +1 %."""
    returns = np.array([[np.nan, np.nan], [0.1, 0.0], [0.1, np.nan], [-0.5, 0.01]])
    return Market(
        calendar=np.array(
            ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06"], dtype="datetime64[D]"
        ),
        symbols=np.array(["A", "B"], dtype=object),
        returns=returns,
        sector_code=np.zeros(2, dtype=int),
        sector_names=("X",),
        index=np.full(4, np.nan),
        universe=np.full(4, np.nan),
    )


def test_forward_returns_compound_from_the_close_of_the_date():
    scores = pl.DataFrame(
        {
            "date": [date(2020, 1, 1)] * 2 + [date(2020, 1, 2), date(2020, 1, 9)],
            "symbol": ["A", "B", "A", "A"],
            "score": [1.0, 0.0, 1.0, 1.0],
        }
    )
    out = forward_returns(scores, two_name_market(), horizons=(1, 2, 3))
    a0, b0, a1, off = out.rows(named=True)
    assert a0["fwd_1"] == pytest.approx(0.1) and a0["fwd_2"] == pytest.approx(0.21)
    assert a0["fwd_3"] == pytest.approx(1.21 * 0.5 - 1)
    assert b0["fwd_1"] == 0.0 and np.isnan(b0["fwd_2"])  # a missing day inside: unknown
    assert a1["fwd_2"] == pytest.approx(1.1 * 0.5 - 1) and np.isnan(a1["fwd_3"])  # past the end
    assert np.isnan(off["fwd_1"])  # a date not in the calendar


def test_ic_table_rolls_and_accumulates():
    ic = pl.DataFrame(
        {"date": [date(2020, m, 28) for m in (3, 1, 2)], "ic": [0.3, 0.1, -0.1], "n": [5, 5, 5]}
    )
    out = ic_table(ic, window=2)
    np.testing.assert_allclose(out["ic_cum"].to_numpy(), [0.1, 0.0, 0.3])
    assert out["ic_rolling"][0] is None and out["ic_rolling"][2] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def planted():
    """Scores at every 21st day that rank the next 5 days' returns perfectly, and say
    nothing about the returns after that."""
    market = synthetic_market(n_symbols=50, n_days=1000, seed=2)
    dates = market.calendar[10:-70:21]
    day = np.searchsorted(market.calendar, dates)
    ahead = np.stack([market.returns[d + 1 : d + 6].sum(axis=0) for d in day])
    scores = pl.DataFrame(
        {
            "date": np.repeat(dates, 50),
            "symbol": np.tile(market.symbols, len(dates)).tolist(),
            "score": ahead.ravel(),
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    return market, forward_returns(scores, market)


def test_ic_decays_after_the_horizon_the_scores_know(planted):
    market, forward = planted
    decay = ic_decay(forward, market.calendar)
    assert decay["horizon"].to_list() == [1, 5, 21, 63]
    ic = dict(zip(decay["horizon"], decay["ic_mean"], strict=True))
    assert ic[5] > 0.95  # log vs simple compounding: not exactly 1
    assert 0.3 < ic[1] < 0.6  # one day of five
    assert 0.3 < ic[21] < 0.65 and ic[63] < ic[21]
    adj = decay.filter(pl.col("horizon") == 63).row(0, named=True)
    assert adj["ic_tstat_overlap_adj"] == pytest.approx(adj["ic_tstat"] / np.sqrt(3))


def test_quintiles_are_ordered_and_the_spread_is_top_minus_bottom(planted):
    market, forward = planted
    five = quintile_returns(excess_tables(forward)).filter(pl.col("horizon") == 5)
    assert five["quintile"].to_list() == [1, 2, 3, 4, 5]
    means = five["mean_excess"].to_numpy()
    assert (np.diff(means) > 0).all() and abs(means.mean()) < 1e-3
    spread = quintile_spread(excess_tables(forward), forward["date"], market.calendar).filter(
        pl.col("horizon") == 5
    )
    assert spread["spread_mean"][0] == pytest.approx(means[-1] - means[0])
    assert spread["spread_tstat"][0] > 10


def test_constant_scores_have_no_ic_and_no_spread():
    market = synthetic_market(n_symbols=10, n_days=200)
    scores = pl.DataFrame(
        {"date": [date(2012, 3, 1)] * 10, "symbol": market.symbols.tolist(), "score": [0.0] * 10}
    )
    forward = forward_returns(scores, market)
    assert ic_decay(forward, market.calendar)["periods"].to_list() == [0, 0, 0, 0]
    assert quintile_returns(excess_tables(forward)).height == 0
    assert (
        quintile_spread(excess_tables(forward), forward["date"], market.calendar)["spread_mean"]
        .is_nan()
        .all()
    )


def test_a_total_loss_compounds_to_minus_one_without_a_warning():
    """A -100 % day: windows across it are ~-1, later windows as if it had not happened."""
    import warnings

    market = synthetic_market(n_symbols=6, n_days=80, seed=5)
    returns = market.returns.copy()
    returns[40, 0] = -1.0
    hit = dataclasses.replace(market, returns=returns)
    days = hit.calendar[[38, 50]].astype("datetime64[D]")
    scores = pl.DataFrame(
        {"date": days, "symbol": [str(hit.symbols[0])] * 2, "score": [1.0, 1.0]}
    ).with_columns(pl.col("date").cast(pl.Date))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = forward_returns(scores, hit, horizons=(5,))
    assert out["fwd_5"][0] == pytest.approx(-1.0, abs=1e-9)
    expected = np.prod(1 + returns[51:56, 0]) - 1
    assert out["fwd_5"][1] == pytest.approx(expected, rel=1e-9)
