"""Factor attribution on synthetic data where the answer is known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.research.attribution import (
    ALPHA,
    factor_attribution,
    newey_west_lags,
    newey_west_ols,
)
from engine.research.backtest import backtest
from engine.research.factors import (
    MARKET,
    STYLE_FACTORS,
    factor_returns,
    factor_target_matrix,
    quintile_weights,
)
from tests.synthetic_market import rebalance_features, synthetic_market

MOMENTUM = STYLE_FACTORS[0]


@pytest.fixture(scope="module")
def panel():
    market = synthetic_market(n_symbols=80, n_days=2000, seed=3)
    features = rebalance_features(market, seed=4)
    factors = factor_returns(features, market, execution_lag=1)
    return market, features, factors


def regress(excess: np.ndarray, factors: pl.DataFrame):
    return factor_attribution(excess, factors.drop("date"))


def term(fit, name: str) -> dict[str, float]:
    """The row of term ``name`` (``alpha`` or a factor) of ``fit``'s table."""
    return fit.table.filter(pl.col("term") == name).row(0, named=True)


def live_days(factors: pl.DataFrame) -> np.ndarray:
    return np.isfinite(factors.drop("date").to_numpy()).all(axis=1)


def test_newey_west_lag_rule():
    assert [newey_west_lags(n) for n in (0, 100, 2500)] == [0, 4, 8]


def test_a_portfolio_built_to_load_on_momentum_shows_that_loading_and_no_alpha(panel):
    """Hold the equal-weight universe plus 0.6 units of the momentum long-short book,
    traded and drifting like any portfolio: the momentum loading is ~0.6, the others and
    the alpha ~0."""
    market, features, factors = panel
    rebal = np.sort(features["date"].unique().to_numpy()).astype("datetime64[D]")
    tilt = factor_target_matrix(quintile_weights(features, MOMENTUM), rebal, market.symbols)
    targets = 1 / len(market.symbols) + 0.6 * tilt
    days = np.searchsorted(market.calendar, rebal) + 1
    net = backtest(market.returns, days, targets, cost_bps=0.0).gross
    excess = np.where(live_days(factors), net - market.universe, np.nan)
    fit = regress(excess, factors)
    assert term(fit, "momentum")["coef"] == pytest.approx(0.6, abs=0.03)
    assert term(fit, "momentum")["tstat"] > 20
    for other in (MARKET, "low_vol", "reversal"):
        assert abs(term(fit, other)["coef"]) < 0.05
    assert abs(term(fit, ALPHA)["tstat"]) < 2
    assert abs(term(fit, ALPHA)["coef"]) < 0.01  # annualised
    assert fit.r2 > 0.9


def test_a_long_only_top_quintile_of_momentum_loads_half_on_the_long_short_book(panel):
    """Top quintile minus the universe = 1/2 (top - bottom) + 1/2 (top + bottom - 2
    universe); the second half is unrelated to momentum when returns are: loading ~0.5,
    no alpha, and the rest of the excess unexplained (R^2 well below 1)."""
    market, features, factors = panel
    rebal = np.sort(features["date"].unique().to_numpy()).astype("datetime64[D]")
    tilt = factor_target_matrix(quintile_weights(features, MOMENTUM), rebal, market.symbols)
    days = np.searchsorted(market.calendar, rebal) + 1
    net = backtest(market.returns, days, np.clip(tilt, 0, None), cost_bps=10.0).net
    fit = regress(np.where(live_days(factors), net - market.universe, np.nan), factors)
    assert term(fit, "momentum")["coef"] == pytest.approx(0.5, abs=0.05)
    assert abs(term(fit, ALPHA)["tstat"]) < 2
    assert 0.3 < fit.r2 < 0.9


def test_planted_skill_shows_as_alpha_beside_the_factor_exposures(panel):
    """Excess = 0.3 momentum - 0.2 low-vol + 4 bp a day + noise: alpha ~ 10 %/yr, t > 3."""
    _, _, factors = panel
    rng = np.random.default_rng(5)
    f = factors.to_dict(as_series=False)
    excess = (
        0.3 * np.array(f["momentum"])
        - 0.2 * np.array(f["low_vol"])
        + 0.0004
        + rng.normal(0, 0.003, factors.height)
    )
    fit = regress(excess, factors)
    assert term(fit, ALPHA)["coef"] == pytest.approx(0.0004 * 252, abs=0.03)
    assert term(fit, ALPHA)["tstat"] > 3
    assert term(fit, "momentum")["coef"] == pytest.approx(0.3, abs=0.03)
    assert term(fit, "low_vol")["coef"] == pytest.approx(-0.2, abs=0.03)
    contributions = fit.table["contribution"].sum()
    assert contributions == pytest.approx(fit.excess_mean, rel=1e-9)


def test_pure_noise_has_no_alpha_and_explains_nothing(panel):
    _, _, factors = panel
    noise = np.random.default_rng(6).normal(0, 0.005, factors.height)
    fit = regress(np.where(live_days(factors), noise, np.nan), factors)
    assert abs(term(fit, ALPHA)["tstat"]) < 2.5
    assert fit.r2 < 0.02
    assert fit.days == int(live_days(factors).sum())
    assert fit.lags == newey_west_lags(fit.days)


def test_too_few_days_give_nans_not_an_error(panel):
    _, _, factors = panel
    fit = regress(np.full(factors.height, np.nan), factors)
    assert fit.days == 0 and np.isnan(fit.r2)
    assert fit.table["term"].to_list() == [ALPHA, MARKET, "momentum", "low_vol", "reversal"]


def test_newey_west_ols_matches_statsmodels():
    """The numpy Newey-West OLS gives statsmodels' HAC fit (its test oracle)."""
    from statsmodels.regression.linear_model import OLS

    rng = np.random.default_rng(11)
    n = 600
    x = rng.standard_normal((n, 3))
    noise = np.convolve(rng.standard_normal(n + 4), np.ones(5) / 5, mode="valid")  # autocorrelated
    y = 0.001 + x @ np.array([0.4, -0.2, 0.0]) + noise * (1 + np.abs(x[:, 0]))
    design = np.column_stack([np.ones(n), x])
    for lags in (0, 1, 8):
        ours = newey_west_ols(y, design, lags)
        oracle = OLS(y, design).fit(cov_type="HAC", cov_kwds={"maxlags": lags})
        np.testing.assert_allclose(ours.params, oracle.params, rtol=1e-10)
        np.testing.assert_allclose(ours.tvalues, oracle.tvalues, rtol=1e-9)
        np.testing.assert_allclose(ours.pvalues, oracle.pvalues, rtol=1e-7, atol=1e-12)
        assert ours.r2 == pytest.approx(oracle.rsquared, rel=1e-10)


def test_a_perfect_fit_and_a_constant_excess_give_nan_not_a_warning():
    import warnings

    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 2))
    design = np.column_stack([np.ones(200), x])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = newey_west_ols(x @ np.array([0.5, -1.0]), design, 4)
        flat = newey_west_ols(np.zeros(200), design, 4)
    assert exact.params[1:] == pytest.approx([0.5, -1.0])
    assert np.isnan(flat.tvalues).all() and np.isnan(flat.r2)
