"""Metrics against hand computations and planted values."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from engine.research import metrics as mt

RNG = np.random.default_rng(0)


def test_growth_risk_and_drawdown_on_a_known_path():
    r = np.array([0.1, -0.5, 0.2, np.nan, 0.0])
    assert mt.total_return(r) == pytest.approx(1.1 * 0.5 * 1.2 - 1)
    assert mt.cagr(r) == pytest.approx((1.1 * 0.5 * 1.2) ** (252 / 4) - 1)
    assert mt.max_drawdown(r) == pytest.approx(-0.5)
    np.testing.assert_allclose(mt.drawdown(r), [0, -0.5, -0.4, -0.4, -0.4])
    assert mt.calmar(r) == pytest.approx(mt.cagr(r) / 0.5)


def test_sharpe_and_sortino():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    assert mt.sharpe(r) == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    downside = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    assert mt.sortino(r) == pytest.approx(r.mean() / downside * math.sqrt(252))
    assert math.isnan(mt.sharpe(np.ones(5)))


def test_var_and_cvar_are_positive_losses():
    r = np.linspace(-0.10, 0.09, 20)  # -0.10, -0.09, ..., 0.09
    var, cvar = mt.var_cvar(r)
    assert var == pytest.approx(-np.quantile(r, 0.05))
    assert cvar == pytest.approx(0.10)


def test_alpha_and_beta_recover_planted_values():
    bench = RNG.normal(0.0004, 0.01, 5000)
    port = 0.0002 + 1.3 * bench + RNG.normal(0, 0.002, 5000)
    rel = mt.relative(port, bench, "_vs_b")
    assert rel["beta_vs_b"] == pytest.approx(1.3, abs=0.01)
    assert rel["alpha_vs_b"] == pytest.approx(0.0002 * 252, abs=0.01)
    active = port - bench
    assert rel["tracking_error_vs_b"] == pytest.approx(active.std(ddof=1) * math.sqrt(252))
    assert rel["information_ratio_vs_b"] == pytest.approx(mt.sharpe(active))


def test_relative_uses_only_days_both_series_exist():
    port, bench = np.array([0.01, 0.02, 0.03, 0.04]), np.array([np.nan, np.nan, 0.01, 0.01])
    rel = mt.relative(port, bench, "")
    assert rel["days"] == 2
    assert rel["excess_cagr"] == pytest.approx(mt.cagr(port[2:]) - mt.cagr(bench[2:]))


def test_sharpe_tstat_is_about_sr_sqrt_n_for_normal_returns():
    r = RNG.normal(0.001, 0.01, 10_000)
    sr = r.mean() / r.std(ddof=1)
    assert mt.sharpe_tstat(r) == pytest.approx(sr * math.sqrt(len(r)), rel=0.02)


def test_probabilistic_and_deflated_sharpe():
    skilled = RNG.normal(0.001, 0.01, 2000)
    assert mt.probabilistic_sharpe(skilled) > 0.99
    assert mt.probabilistic_sharpe(RNG.normal(0, 0.01, 2000), benchmark_sr=0.0) == pytest.approx(
        0.5, abs=0.45
    )
    one = mt.deflated_sharpe(skilled, np.array([0.1]))
    many = mt.deflated_sharpe(skilled, RNG.normal(0, 0.05, 50))
    assert one == pytest.approx(mt.probabilistic_sharpe(skilled))  # one trial: nothing to deflate
    assert many < one  # more trials: a higher bar
    assert mt.expected_max_sharpe(np.array([0.0, 0.1])) > 0


def test_expected_max_sharpe_grows_with_trials():
    small = mt.expected_max_sharpe(RNG.normal(0, 0.05, 5))
    large = mt.expected_max_sharpe(RNG.normal(0, 0.05, 500))
    assert large > small > 0


def _frame(scores, labels, dates=None):
    dates = dates or [date(2020, 1, 31)] * len(scores)
    return pl.DataFrame(
        {"date": dates, "score": scores, "fwd": labels}, schema_overrides={"date": pl.Date}
    )


def test_rank_ic_per_date_and_summary():
    frame = pl.concat(
        [
            _frame([1.0, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], [date(2020, 1, 31)] * 4),
            _frame([1.0, 2, 3, 4], [0.4, 0.3, 0.2, 0.1], [date(2020, 2, 28)] * 4),
            _frame([1.0, 1, 1, 1], [0.4, 0.3, 0.2, 0.1], [date(2020, 3, 31)] * 4),
        ]
    )
    ic = mt.rank_ic_by_label(frame, ("fwd",))["fwd"]
    assert ic["ic"].to_list() == pytest.approx([1.0, -1.0])  # constant scores: no IC
    summary = mt.ic_summary(np.array([0.02, 0.04, 0.06]))
    assert summary["ic_mean"] == pytest.approx(0.04)
    assert summary["ic_tstat"] == pytest.approx(0.04 / 0.02 * math.sqrt(3))
    assert summary["ic_positive_share"] == 1.0


def test_hit_rate_and_r2():
    frame = _frame([1.0, 2, 3, 4], [0.1, 0.2, 0.4, 0.3])  # same halves, different order
    assert mt.hit_rate(frame, "fwd") == pytest.approx(1.0)
    y = np.array([0.1, 0.2, 0.3])
    assert mt.r2_oos(y, y) == 1.0
    assert mt.r2_oos(y, np.full(3, y.mean())) == pytest.approx(0.0)
    assert mt.r2_oos(y, np.full(3, 1.0)) < 0


def test_sector_attribution_sums_to_the_excess_return():
    n_sym, n_per = 12, 6
    codes = np.arange(n_sym) % 4
    weights = np.zeros((n_per, n_sym))
    for p in range(n_per):
        pick = RNG.choice(n_sym, 4, replace=False)
        weights[p, pick] = 0.24  # 4 % cash
    period = RNG.normal(0.01, 0.05, (n_per, n_sym))
    period[2, 5] = np.nan
    table = mt.sector_attribution(weights, period, codes, ("A", "B", "C", "D"))
    live = ~np.isnan(period)
    excess = sum(
        (weights[p] * np.nan_to_num(period[p])).sum() - np.nanmean(period[p]) for p in range(n_per)
    )
    assert table["total"].sum() == pytest.approx(excess)
    assert "Cash" in table["sector"].to_list()
    assert live.sum() > 0
