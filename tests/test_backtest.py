"""Daily backtest: timing (execution lag), drifting weights, costs, period returns."""

from __future__ import annotations

import numpy as np
import pytest

from engine.research.backtest import (
    RunningSums,
    backtest,
    equal_weight_universe,
    holding_period_returns,
    simple_returns,
)


def test_simple_returns_of_a_price_matrix():
    prices = np.array([[10.0, 20.0], [11.0, np.nan], [12.1, 22.0]])
    r = simple_returns(prices)
    assert np.isnan(r[0]).all()
    np.testing.assert_allclose(r[1:, 0], [0.1, 0.1])
    assert np.isnan(r[1, 1]) and np.isnan(r[2, 1])


def test_new_weights_earn_from_the_day_after_the_trade():
    """Signal at the close of day 2, lag 1: the trade is at the close of day 3, so the
    jump on day 3 is NOT earned and the jump on day 4 is."""
    returns = np.zeros((7, 1))
    returns[3, 0], returns[4, 0] = 0.50, 0.10
    signal_day, lag = 2, 1
    result = backtest(returns, np.array([signal_day + lag]), np.array([[1.0]]), cost_bps=0.0)
    assert result.gross[3] == 0.0
    assert result.gross[4] == pytest.approx(0.10)
    assert result.start == 3


def test_zero_lag_trades_at_the_signal_close_and_still_misses_that_day():
    returns = np.zeros((5, 1))
    returns[2, 0] = 0.5
    result = backtest(returns, np.array([2]), np.array([[1.0]]), cost_bps=0.0)
    assert result.gross[2] == 0.0 and result.gross.sum() == 0.0


def test_weights_drift_with_prices_between_trades():
    """Two names, 50/50 at the start; A doubles on day 1 and both rise 10 % on day 2.
    Without rebalancing A is then 2/3 of the book, so day 2 returns 10 % and the next
    trade back to 50/50 turns over |1/2 - 2/3| + |1/2 - 1/3| = 1/3."""
    returns = np.array([[0.0, 0.0], [1.0, 0.0], [0.1, 0.1], [0.0, 0.0]])
    targets = np.array([[0.5, 0.5], [0.5, 0.5]])
    result = backtest(returns, np.array([0, 2]), targets, cost_bps=0.0)
    assert result.gross[1] == pytest.approx(0.5)
    assert result.gross[2] == pytest.approx(0.1)
    assert result.turnover[2] == pytest.approx(1 / 3)


def test_costs_are_charged_on_turnover_at_the_trade_close():
    returns = np.full((5, 2), 0.01)
    targets = np.array([[1.0, 0.0], [0.0, 1.0]])
    result = backtest(returns, np.array([0, 2]), targets, cost_bps=10.0)
    assert result.turnover[0] == pytest.approx(1.0)  # from cash
    assert result.turnover[2] == pytest.approx(2.0)  # sell all A, buy all B
    assert result.net[0] == pytest.approx(-0.001)
    assert result.net[2] == pytest.approx(1.01 * (1 - 0.002) - 1)
    assert result.net[1] == pytest.approx(result.gross[1])


def test_cash_earns_nothing_and_missing_returns_hold_flat():
    returns = np.array([[0.0, 0.0], [0.1, np.nan], [0.1, 0.2]])
    result = backtest(returns, np.array([0]), np.array([[0.5, 0.25]]), cost_bps=0.0)
    assert result.gross[1] == pytest.approx(0.05)
    value = 1 + 0.05
    assert result.gross[2] == pytest.approx((0.55 * 0.1 + 0.25 * 0.2) / value)


def test_trades_past_the_calendar_are_dropped():
    result = backtest(np.zeros((3, 1)), np.array([5]), np.array([[1.0]]), cost_bps=10.0)
    assert result.turnover.sum() == 0.0 and result.net.sum() == 0.0


def test_equal_weight_universe_averages_available_names():
    returns = np.array([[np.nan, np.nan], [0.1, np.nan], [0.1, 0.3]])
    universe = equal_weight_universe(returns)
    assert np.isnan(universe[0])
    np.testing.assert_allclose(universe[1:], [0.1, 0.2])


def test_holding_period_returns_compound_between_trades():
    returns = np.array([[np.nan, 0.0], [0.1, 0.0], [0.1, np.nan], [-0.5, 0.2], [0.0, 0.0]])
    period = holding_period_returns(RunningSums.of(returns), np.array([0, 2]))
    np.testing.assert_allclose(period[0], [1.1 * 1.1 - 1, 0.0])
    np.testing.assert_allclose(period[1], [-0.5, 0.2])


def test_backtest_matches_a_plain_loop_on_random_data():
    rng = np.random.default_rng(4)
    returns = rng.normal(0.0005, 0.02, (60, 5))
    trade_days = np.array([3, 20, 41])
    targets = rng.dirichlet(np.ones(5), 3) * 0.9
    result = backtest(returns, trade_days, targets, cost_bps=7.0)
    holdings, cash, value, net = np.zeros(5), 1.0, 1.0, []
    for day in range(60):
        value_before = value
        holdings = holdings * (1 + returns[day])
        value = holdings.sum() + cash
        r = value / value_before - 1
        if day in trade_days:
            target = targets[list(trade_days).index(day)]
            turnover = np.abs(target - holdings / value).sum()
            value *= 1 - turnover * 7.0 / 1e4
            r = value / value_before - 1
            holdings, cash = target * value, (1 - target.sum()) * value
        net.append(r)
    np.testing.assert_allclose(result.net[3:], net[3:], atol=1e-12)


def test_holding_period_returns_through_a_total_loss_are_finite_and_later_ones_unaffected():
    """A -100 % day: its period compounds to ~-100 %, the next period as if it had not
    happened (a running log sum that went to -inf would leave every later period NaN)."""
    returns = np.array([[np.nan, 0.0], [0.1, 0.0], [-1.0, 0.1], [0.2, 0.1], [0.1, 0.0]])
    period = holding_period_returns(RunningSums.of(returns), np.array([0, 2]))
    assert period[0, 0] == pytest.approx(-1.0, abs=1e-9)
    np.testing.assert_allclose(period[1], [1.2 * 1.1 - 1, 1.1 - 1])
    np.testing.assert_allclose(period[0, 1], 1.1 - 1)
