"""Tear-sheet tables on small hand-checkable equity frames."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from engine.research.tearsheet import (
    MONTHS,
    drawdowns,
    monthly_returns,
    rolling_risk,
    trading_costs,
    worst_drawdowns,
    yearly_returns,
)

NAN = float("nan")


def equity(days: list[date], net: list[float], **other: list[float]) -> pl.DataFrame:
    n = len(days)
    cols = {"gross": net, "turnover": [0.0] * n, "index": net, "universe": net} | other
    return pl.DataFrame({"date": days, "net": net, **cols})


def test_monthly_returns_compound_within_each_month():
    days = [date(2020, 1, 2), date(2020, 1, 3), date(2020, 2, 3), date(2021, 3, 1)]
    table = monthly_returns(equity(days, [0.10, 0.10, -0.05, NAN]))
    assert table.columns == ["year", *MONTHS]
    jan, feb = table.row(0, named=True)["Jan"], table.row(0, named=True)["Feb"]
    assert jan == pytest.approx(0.21) and feb == pytest.approx(-0.05)
    assert table["year"].to_list() == [2020, 2021]
    assert table.row(1, named=True)["Mar"] is None  # only an unknown return: no figure
    assert table.row(0, named=True)["Dec"] is None


def test_yearly_returns_with_excess_turnover_and_cost_drag():
    days = [date(2020, 1, 2), date(2020, 6, 1), date(2021, 1, 4)]
    frame = equity(
        days,
        [0.10, 0.10, 0.0],
        gross=[0.11, 0.10, 0.0],
        index=[NAN, 0.05, 0.01],
        universe=[0.0, 0.0, 0.02],
        turnover=[1.0, 0.5, 0.0],
    )
    y2020 = yearly_returns(frame).row(0, named=True)
    assert y2020["net"] == pytest.approx(0.21)
    assert y2020["gross"] == pytest.approx(1.11 * 1.10 - 1)
    assert y2020["index"] == pytest.approx(0.05)  # over the days the index exists
    assert y2020["excess_vs_index"] == pytest.approx(0.16)
    assert y2020["excess_vs_universe"] == pytest.approx(0.21)
    assert y2020["turnover"] == 1.5 and y2020["days"] == 2
    assert y2020["cost_drag"] == pytest.approx(1.11 * 1.10 - 1.21)


def test_drawdowns_start_where_each_series_starts():
    days = [date(2020, 1, d) for d in (2, 3, 6, 7)]
    frame = equity(days, [0.0, -0.5, 0.5, 0.5], index=[NAN, NAN, -0.1, 0.0])
    dd = drawdowns(frame)
    np.testing.assert_allclose(dd["net"].to_numpy(), [0.0, -0.5, -0.25, 0.0])
    assert np.isnan(dd["index"][0]) and dd["index"][2] == pytest.approx(-0.1)


def test_worst_drawdowns_find_peak_trough_and_recovery():
    """Up 10 %, down to 0.88 of the peak, back above it; then a fall not recovered."""
    days = [date(2020, 1, d) for d in (1, 2, 3, 6, 7, 8, 9)]
    net = [0.10, -0.10, -0.0222222222, 0.20, -0.5, 0.1, 0.0]
    table = worst_drawdowns(equity(days, net))
    assert table.height == 2
    deep, shallow = table.row(0, named=True), table.row(1, named=True)
    assert deep["peak"] == date(2020, 1, 6) and deep["trough"] == date(2020, 1, 7)
    assert deep["depth"] == pytest.approx(-0.5) and deep["recovery"] is None
    assert shallow["peak"] == date(2020, 1, 1) and shallow["trough"] == date(2020, 1, 3)
    assert shallow["recovery"] == date(2020, 1, 6)
    assert shallow["depth"] == pytest.approx(0.9 * (1 - 0.0222222222) - 1)
    assert shallow["days_to_trough"] == 2 and shallow["days_to_recover"] == 1


def test_rolling_sharpe_and_beta_over_a_trailing_window():
    rng = np.random.default_rng(0)
    bench = rng.normal(0, 0.01, 300)
    net = 1.5 * bench + 0.0005
    days = [date(2019, 1, 1) + timedelta(days=i) for i in range(300)]
    frame = equity(days, net.tolist(), index=bench.tolist(), universe=bench.tolist())
    out = rolling_risk(frame, window=50)
    assert out["beta_index"][:49].is_null().all()
    np.testing.assert_allclose(out["beta_universe"][49:].to_numpy(), 1.5)
    last = net[-50:]
    expected = last.mean() / last.std(ddof=1) * np.sqrt(252)
    assert out["sharpe_net"][-1] == pytest.approx(expected)


def test_rolling_beta_needs_a_full_window_of_the_index():
    days = [date(2020, 1, 1) + timedelta(days=i) for i in range(6)]
    frame = equity(
        days, [0.01, 0.02, 0.0, -0.01, 0.03, 0.01], index=[NAN, 0.01, 0.02, 0.0, 0.01, 0.02]
    )
    out = rolling_risk(frame, window=5)
    assert out["beta_index"][4] is None and out["beta_index"][5] is not None


def test_trading_costs_on_trade_days():
    days = [date(2020, 1, d) for d in (2, 3, 6)]
    gross = [0.01, 0.0, 0.02]
    net = [(1.01) * (1 - 0.001) - 1, 0.0, 1.02 * (1 - 0.0005) - 1]
    frame = equity(days, net, gross=gross, turnover=[1.0, 0.0, 0.5])
    out = trading_costs(frame)
    assert out["date"].to_list() == [days[0], days[2]]
    np.testing.assert_allclose(out["cost"].to_numpy(), [0.001, 0.0005])
    np.testing.assert_allclose(out["cost_cum"].to_numpy(), [0.001, 0.0015])
