"""Factor portfolios: quintile legs, point-in-time trading with the lag, drifting weights."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from engine.research.backtest import Market, backtest
from engine.research.factors import (
    MARKET,
    STYLE_FACTORS,
    FactorSpec,
    factor_returns,
    factor_target_matrix,
    feature_factor,
    quintile_weights,
)
from tests.synthetic_market import rebalance_features, synthetic_market

LOW_VOL = STYLE_FACTORS[1]


def one_date(values: list[float | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "date": [date(2020, 1, 31)] * len(values),
            "symbol": [f"S{i}" for i in range(len(values))],
            "x": values,
        },
        schema={"date": pl.Date, "symbol": pl.String, "x": pl.Float64},
    )


def test_top_quintile_is_long_and_bottom_short_equally_weighted():
    """Ten names valued 1..10 (and one without a value): percentiles 0.05..0.95, so the
    two highest are long 1/2 each and the two lowest short 1/2 each."""
    weights = quintile_weights(one_date([*range(1, 11), None]), feature_factor("x"))
    got = dict(zip(weights["symbol"], weights["weight"], strict=True))
    assert got == {"S0": -0.5, "S1": -0.5, "S8": 0.5, "S9": 0.5}


def test_low_minus_high_swaps_the_legs():
    spec = FactorSpec("low_x", "x", -1, "low x")
    weights = quintile_weights(one_date([float(v) for v in range(1, 11)]), spec)
    got = dict(zip(weights["symbol"], weights["weight"], strict=True))
    assert got == {"S0": 0.5, "S1": 0.5, "S8": -0.5, "S9": -0.5}


def test_each_leg_sums_to_one_on_every_date():
    market = synthetic_market(n_symbols=23, n_days=300)
    weights = quintile_weights(rebalance_features(market), STYLE_FACTORS[0])
    sums = weights.group_by("date", (pl.col("weight") > 0).alias("long")).agg(
        pl.col("weight").sum()
    )
    np.testing.assert_allclose(sums["weight"].abs().to_numpy(), 1.0)


def tiny_market() -> Market:
    """Three days, five names A..E: A gains 10 % and E loses 5 % on day 2, nothing else
    moves."""
    returns = np.zeros((3, 5))
    returns[0] = np.nan
    returns[2, 0], returns[2, 4] = 0.10, -0.05
    return Market(
        calendar=np.array(["2020-01-30", "2020-01-31", "2020-02-03"], dtype="datetime64[D]"),
        symbols=np.array(list("ABCDE"), dtype=object),
        returns=returns,
        sector_code=np.zeros(5, dtype=int),
        sector_names=("X",),
        index=np.full(3, np.nan),
        universe=np.array([np.nan, 0.0, 0.01]),
    )


def tiny_features(*extra: tuple[str, float]) -> pl.DataFrame:
    """Rank A first and E last on day 0 (percentiles 0.9 .. 0.1: one name in each leg)."""
    rows = [*zip("ABCDE", (2.0, 1.0, 0.0, -1.0, -2.0), strict=True), *extra]
    return pl.DataFrame(
        {
            "date": [date(2020, 1, 30)] * len(rows),
            "symbol": [r[0] for r in rows],
            "x": [r[1] for r in rows],
        },
    )


def test_a_factor_trades_after_the_lag_and_earns_from_the_next_day():
    """Signal at the close of day 0, lag 1: trade at day 1's close, earn day 2: long A,
    short E returns 0.10 + 0.05 on a unit of capital."""
    out = factor_returns(
        tiny_features(), tiny_market(), execution_lag=1, specs=[feature_factor("x")]
    )
    assert out.columns == ["date", MARKET, "x"]
    assert np.isnan(out["x"][0]) and np.isnan(out["x"][1])
    assert out["x"][2] == pytest.approx(0.15)
    np.testing.assert_array_equal(out[MARKET].to_numpy(), tiny_market().universe)


def test_factor_returns_are_the_backtest_of_the_quintile_targets():
    market = synthetic_market(n_symbols=30, n_days=400)
    features = rebalance_features(market)
    out = factor_returns(features, market, execution_lag=2, specs=[LOW_VOL])
    rebal = np.sort(features["date"].unique().to_numpy()).astype("datetime64[D]")
    targets = factor_target_matrix(quintile_weights(features, LOW_VOL), rebal, market.symbols)
    days = np.searchsorted(market.calendar, rebal) + 2
    expected = backtest(market.returns, days, targets, 0.0)
    live = slice(expected.start + 1, None)
    np.testing.assert_allclose(out["low_vol"].to_numpy()[live], expected.gross[live])
    assert np.isnan(out["low_vol"].to_numpy()[: expected.start + 1]).all()


def test_symbols_outside_the_market_are_ignored():
    features = tiny_features(("ZZZ", 5.0))
    out = factor_returns(features, tiny_market(), execution_lag=1, specs=[feature_factor("x")])
    assert out["x"][2] == pytest.approx(0.15)


def test_features_after_a_date_do_not_move_the_factor_before_it():
    """Point in time: scrambling every feature dated after the 10th rebalance leaves the
    factor's returns up to that rebalance's trade day unchanged."""
    market = synthetic_market(n_symbols=30, n_days=600)
    features = rebalance_features(market)
    cut = features["date"].unique().sort()[10]
    later = pl.col("date") > cut
    scrambled = features.with_columns(
        pl.when(later).then(-pl.col("mom_12_1")).otherwise(pl.col("mom_12_1")).alias("mom_12_1")
    )
    a = factor_returns(features, market, 1, STYLE_FACTORS[:1])["momentum"].to_numpy()
    b = factor_returns(scrambled, market, 1, STYLE_FACTORS[:1])["momentum"].to_numpy()
    upto = int(np.searchsorted(market.calendar, np.datetime64(cut))) + 1 + 1  # trade day + 1
    np.testing.assert_array_equal(a[:upto], b[:upto])
    assert not np.allclose(a[upto + 1 :], b[upto + 1 :])
