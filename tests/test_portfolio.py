"""Scores -> weights: the four schemes, the caps, and point-in-time inputs."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.research.portfolio import (
    COV_WINDOW,
    PortfolioSpec,
    capped,
    date_weights,
    inverse_vol_raw,
    ledoit_wolf_covariance,
    optimised,
    scheme_weights,
    top_n,
    weights,
)
from engine.schema import Weighting

RNG = np.random.default_rng(0)


def _predictions(n_dates: int = 3, n_symbols: int = 12, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    days = [date(2020, 1 + i, 28) for i in range(n_dates)]
    return pl.DataFrame(
        {
            "date": pl.Series([d for d in days for _ in range(n_symbols)], dtype=pl.Date),
            "symbol": [f"S{j:02d}" for j in range(n_symbols)] * n_dates,
            "score": rng.normal(size=n_dates * n_symbols),
        }
    )


def _market(n_symbols: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    calendar = np.arange(np.datetime64("2019-01-01"), np.datetime64("2020-04-30"))
    vols = np.linspace(0.005, 0.03, n_symbols)
    returns = rng.normal(0, 1, (len(calendar), n_symbols)) * vols
    symbols = np.array([f"S{j:02d}" for j in range(n_symbols)])
    return calendar, symbols, returns, np.arange(n_symbols) % 3


def test_top_n_is_deterministic_and_skips_missing_scores():
    frame = pl.DataFrame(
        {
            "date": [date(2020, 1, 1)] * 4,
            "symbol": ["B", "A", "C", "D"],
            "score": [1.0, 1.0, float("nan"), None],
        }
    )
    assert top_n(frame, 3)["symbol"].to_list() == ["A", "B"]


def test_equal_weights_sum_to_one_per_date():
    held = weights(_predictions(), 5)
    assert held.group_by("date").agg(pl.col("weight").sum())["weight"].to_list() == pytest.approx(
        [1.0] * 3
    )
    assert (held.group_by("date").len()["len"] == 5).all()


@settings(max_examples=60, deadline=None)
@given(
    raw=st.lists(st.floats(0.01, 10.0), min_size=2, max_size=15),
    cap=st.floats(0.05, 1.0),
    group_cap=st.one_of(st.none(), st.floats(0.1, 1.0)),
)
def test_capped_weights_respect_every_cap(raw, cap, group_cap):
    raw = np.array(raw)
    cap = max(cap, 1 / len(raw))
    groups = np.arange(len(raw)) % 3
    w = capped(raw, groups, cap, group_cap)
    assert (w >= 0).all() and (w <= cap + 1e-9).all()
    assert w.sum() <= 1 + 1e-9
    if group_cap is not None:
        assert (np.bincount(groups, w) <= group_cap + 1e-9).all()
    else:
        assert w.sum() == pytest.approx(1.0)


def test_capped_redistributes_in_proportion_and_leaves_cash_only_when_forced():
    w = capped(np.array([10.0, 1.0, 1.0, 2.0]), np.zeros(4, dtype=int), 0.4, None)
    np.testing.assert_allclose(w, [0.4, 0.15, 0.15, 0.3], atol=1e-9)
    # two names in one sector capped at 30 %: the rest must be cash
    w = capped(np.ones(2), np.zeros(2, dtype=int), 1.0, 0.3)
    assert w.sum() == pytest.approx(0.3)


def test_inverse_vol_favours_calm_names():
    returns = RNG.normal(0, 1, (63, 3)) * [0.01, 0.02, 0.04]
    w = capped(inverse_vol_raw(returns), np.arange(3), 1.0, None)
    assert w[0] > w[1] > w[2]
    assert w.sum() == pytest.approx(1.0)


def test_min_variance_matches_the_closed_form_when_no_constraint_binds():
    """Unconstrained minimum variance is S^-1 1 / 1'S^-1 1; with loose caps and a
    well-conditioned S every weight is positive, so SLSQP must find it."""
    cov = np.diag([0.04, 0.05, 0.06, 0.08]) + 0.01
    expected = np.linalg.solve(cov, np.ones(4))
    expected /= expected.sum()
    w = optimised(cov, None, np.arange(4), 1.0, None, 1.0)
    np.testing.assert_allclose(w, expected, atol=1e-6)


def test_mean_variance_tilts_to_the_forecast_within_caps():
    cov = np.eye(5) * 0.04
    mu = np.array([0.10, 0.05, 0.0, -0.05, -0.10])
    w = optimised(cov, mu, np.zeros(5, dtype=int), 0.35, None, 5.0)
    assert w.sum() == pytest.approx(1.0)
    assert (np.diff(w) <= 1e-9).all() and w[0] == pytest.approx(0.35, abs=1e-6)
    w_capped = optimised(cov, mu, np.array([0, 0, 1, 1, 1]), 0.35, 0.5, 5.0)
    assert w_capped[:2].sum() <= 0.5 + 1e-6


def test_ledoit_wolf_is_annualised_and_symmetric_positive_definite():
    returns = RNG.normal(0, 0.01, (COV_WINDOW, 6))
    cov = ledoit_wolf_covariance(returns)
    np.testing.assert_allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > 0
    assert np.diag(cov).mean() == pytest.approx(0.01**2 * 252, rel=0.2)


@pytest.mark.parametrize("scheme", list(Weighting))
def test_every_scheme_is_long_only_capped_and_invested(scheme: Weighting):
    calendar, symbols, returns, sectors = _market()
    spec = PortfolioSpec(top_stocks=6, weighting=scheme, max_weight=0.3, sector_cap=0.5)
    held = scheme_weights(_predictions(), spec, calendar, symbols, returns, sectors)
    assert (held["weight"] > 0).all() and (held["weight"] <= 0.3 + 1e-9).all()
    sector = dict(zip(symbols, sectors, strict=True))
    by_sector = held.with_columns(pl.col("symbol").replace_strict(sector).alias("s"))
    assert (
        by_sector.group_by("date", "s").agg(pl.col("weight").sum())["weight"] <= 0.5 + 1e-6
    ).all()
    totals = held.group_by("date").agg(pl.col("weight").sum())["weight"]
    assert ((totals > 0.99) & (totals <= 1 + 1e-9)).all()


@pytest.mark.parametrize(
    "scheme", [Weighting.INVERSE_VOL, Weighting.MIN_VARIANCE, Weighting.MEAN_VARIANCE]
)
def test_weights_at_t_ignore_returns_after_t(scheme: Weighting):
    calendar, symbols, returns, sectors = _market()
    spec = PortfolioSpec(top_stocks=5, weighting=scheme, max_weight=0.4)
    preds = _predictions(n_dates=1)
    before = scheme_weights(preds, spec, calendar, symbols, returns, sectors)
    t = np.searchsorted(calendar, np.datetime64("2020-01-28"))
    changed = returns.copy()
    changed[t + 1 :] = RNG.normal(0, 0.2, changed[t + 1 :].shape)
    after = scheme_weights(preds, spec, calendar, symbols, changed, sectors)
    assert before.equals(after)


def test_name_cap_never_forces_cash():
    """A cap below 1/n is raised to 1/n, so the portfolio stays fully invested."""
    w = date_weights(
        np.ones(4),
        np.zeros(4),
        np.zeros((10, 4)),
        np.arange(4),
        PortfolioSpec(top_stocks=4, max_weight=0.1),
    )
    assert w.sum() == pytest.approx(1.0)
