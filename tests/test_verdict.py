"""The verdict's words: never skill the figures do not show."""

from __future__ import annotations

import math

import pytest

from engine.report.verdict import Tone, tilt, verdict

FIT = {"r2": 0.6, "excess_mean": 0.10, "days": 2500.0, "lags": 8.0}


def rows(alpha_t: float, momentum_t: float = 8.0, vol_t: float = -6.0) -> list[dict]:
    return [
        {"term": "alpha", "coef": 0.01, "tstat": alpha_t, "pvalue": 0.5, "contribution": 0.01},
        {"term": "market", "coef": 0.05, "tstat": 1.0, "pvalue": 0.3, "contribution": 0.001},
        {"term": "momentum", "coef": 0.5, "tstat": momentum_t, "pvalue": 0.0, "contribution": 0.06},
        {"term": "low_vol", "coef": -0.4, "tstat": vol_t, "pvalue": 0.0, "contribution": 0.03},
        {"term": "reversal", "coef": 0.0, "tstat": 0.1, "pvalue": 0.9, "contribution": -0.001},
    ]


def test_no_skill_and_factor_tilts_say_so():
    v = verdict({"ic_mean": 0.002, "ic_tstat_overlap_adj": 0.5}, rows(alpha_t=0.3), FIT)
    assert v.headline.startswith("No evidence of forecasting skill (IC t = +0.5)")
    assert "tilts to momentum and high volatility (+9.0%/yr of +10.0%/yr)" in v.headline
    assert "not from alpha (alpha t = +0.3, R² 0.60)" in v.headline
    assert v.tone is Tone.NO_SKILL


def test_skill_and_alpha():
    v = verdict({"ic_mean": 0.03, "ic_tstat_overlap_adj": 3.1}, rows(alpha_t=2.4), FIT)
    assert v.headline.startswith("Evidence of forecasting skill (IC t = +3.1) and of alpha")
    assert v.tone is Tone.SKILL


def test_the_overlap_adjusted_t_decides_not_the_plain_one():
    m = {"ic_mean": 0.02, "ic_tstat": 2.9, "ic_tstat_overlap_adj": 1.4}
    v = verdict(m, rows(alpha_t=0.0), FIT)
    assert v.headline.startswith("No evidence of forecasting skill (IC t = +1.4)")


def test_alpha_without_ic_is_flagged():
    v = verdict({"ic_mean": 0.0, "ic_tstat_overlap_adj": 0.2}, rows(alpha_t=2.5), FIT)
    assert "treat it with suspicion" in v.headline and v.tone is Tone.MIXED


def test_many_models_with_a_low_deflated_sharpe_may_be_luck():
    m = {"ic_mean": 0.03, "ic_tstat_overlap_adj": 3.0, "trials": 7.0,
         "deflated_sharpe_vs_universe": 0.71}  # fmt: skip
    v = verdict(m, rows(alpha_t=2.5), FIT)
    assert "may be luck" in v.headline and v.tone is Tone.MIXED
    assert any("7 models tried" in f and "0.71" in f for f in v.findings)


def test_no_significant_tilt_and_no_alpha():
    v = verdict({"ic_mean": 0.0, "ic_tstat_overlap_adj": -0.4}, rows(0.5, 1.0, -1.0), FIT)
    assert "is not significant after factors" in v.headline


def test_constant_scores_and_too_few_days():
    v = verdict({"ic_mean": None, "ic_tstat_overlap_adj": None}, rows(math.nan), {"r2": None})
    assert v.findings[0].startswith("No forecasting skill to judge")
    assert "no factor attribution" in v.headline


@pytest.mark.parametrize("ic_t", [-3.0, -1.99, 0.0, 1.0, 1.99])
@pytest.mark.parametrize("alpha_t", [-2.5, 0.0, 1.99])
def test_no_claim_of_skill_or_alpha_below_two(ic_t: float, alpha_t: float):
    v = verdict({"ic_mean": 0.01, "ic_tstat_overlap_adj": ic_t}, rows(alpha_t), FIT)
    assert "Evidence of" not in v.headline and "forecast returns" not in v.headline
    assert "yet an alpha" not in v.headline and v.tone is Tone.NO_SKILL


def test_tilt_words():
    assert tilt("low_vol", -0.3) == "high volatility"
    assert tilt("beta_63d", 0.2) == "high beta_63d"
