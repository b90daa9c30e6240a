"""The report's data from a real run on a small synthetic archive: computed, written,
read back unchanged; consistent with the run's own metrics."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.config import RunSpec
from engine.data.archive import load_archive
from engine.pipeline import StageTimer, evaluate_model, prepare
from engine.pipeline.factors import (
    live_factors,
    model_attribution,
    rebalance_features,
    run_factors,
)
from engine.report.tables import (
    TABLES,
    daily_document,
    parse_report_tables,
    report_tables,
    tables_document,
)
from engine.research.factors import STYLE_FACTORS, feature_factor
from engine.schema import ModelName


@pytest.fixture(scope="module")
def run(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    archive = load_archive(small_archive, tmp_path_factory.mktemp("report-cache"))
    out = tmp_path_factory.mktemp("report-out")
    spec = RunSpec().replace(**{"paths.output": out, "tracking.enabled": False})
    prepared = prepare(archive, spec, StageTimer())
    results = {
        m: evaluate_model(archive, spec.with_model(m), prepared, StageTimer())
        for m in (ModelName.RIDGE, ModelName.MOMENTUM, ModelName.EQUAL_WEIGHT)
    }
    return spec, prepared, prepared.factors, results


def test_rebalance_features_are_the_model_frame_rows_on_rebalance_dates(run):
    _, prepared, _, _ = run
    data = prepared.data
    frame = rebalance_features(data, ("mom_12_1", "vol_63d"))
    assert frame.columns == ["date", "symbol", "mom_12_1", "vol_63d"]
    assert frame.height == len(data.scored)
    row = 7
    expected = np.asarray(data.X[data.scored[row : row + 1]])[0, data.features.index("vol_63d")]
    assert frame["vol_63d"][row] == pytest.approx(float(expected))
    assert set(frame["date"].unique().to_numpy()) <= set(data.rebalances)


def test_tables_round_trip_through_the_files(run):
    results = run[3]
    tables = report_tables(results[ModelName.RIDGE])
    assert set(tables.tables) == set(TABLES)
    back = parse_report_tables(tables_document(tables), daily_document(tables))
    assert back.daily.equals(tables.daily)
    assert back.fit == pytest.approx(tables.fit)
    for name, frame in tables.tables.items():
        got = back.tables[name]
        assert got.columns == frame.columns and got.height == frame.height, name
        numeric = [c for c, t in frame.schema.items() if t.is_numeric()]
        np.testing.assert_allclose(
            got.select(numeric).to_numpy().astype(float),
            frame.select(numeric).fill_nan(None).to_numpy().astype(float),
            err_msg=name,
        )


def test_ic_decay_at_the_label_horizon_is_the_runs_ic(run):
    settings, results = run[0], run[3]
    result = results[ModelName.RIDGE]
    decay = report_tables(result).tables["ic_decay"]
    at_label = decay.filter(pl.col("horizon") == settings.features.horizon).row(0, named=True)
    assert at_label["ic_mean"] == pytest.approx(result.metrics["ic_mean"], abs=2e-3)


def test_contributions_add_up_to_the_excess_every_day(run):
    results = run[3]
    daily = report_tables(results[ModelName.RIDGE]).daily
    parts = daily.select(pl.sum_horizontal(pl.col("^contrib_.*_cum$"))).to_series()
    np.testing.assert_allclose(parts.to_numpy(), daily["excess_cum"].to_numpy(), atol=1e-12)
    assert daily["equity_universe"].equals(results[ModelName.RIDGE].equity["equity_universe"])


def test_the_momentum_baseline_loads_on_the_momentum_factor(run):
    """The baseline holds the top 10 of 40 names by mom_12_1: a momentum tilt."""
    results = run[3]
    fit = report_tables(results[ModelName.MOMENTUM]).tables["factor_fit"]
    momentum = fit.filter(pl.col("term") == "momentum").row(0, named=True)
    assert momentum["coef"] > 0.2 and momentum["tstat"] > 3


def test_attribution_metrics_are_flat_and_named(run):
    _, _, _, results = run
    result = results[ModelName.RIDGE]
    flat = result.factor_fit.metrics()
    assert flat.items() <= result.metrics.items()
    assert {
        "factor_alpha",
        "factor_alpha_tstat",
        "factor_r2",
        "factor_momentum_loading",
        "factor_market_tstat",
        "factor_reversal_loading",
    } <= set(flat)
    assert flat["factor_alpha"] == result.factor_fit.table["coef"][0]
    assert all(isinstance(v, float) for v in flat.values())


def test_any_feature_can_be_a_factor(run):
    settings, prepared, _, results = run
    specs = (*STYLE_FACTORS, feature_factor("beta_63d"))
    lag = settings.backtest.execution_lag
    factors = run_factors(prepared.data, prepared.market, lag, specs).result()
    ridge = results[ModelName.RIDGE]
    live = live_factors(ridge.equity, factors)
    fit = model_attribution(ridge.equity, live)
    tables = report_tables(dataclasses.replace(ridge, factors=live, factor_fit=fit))
    assert tables.tables["factor_fit"]["term"].to_list()[-1] == "beta_63d"
    assert tables.factors["beta_63d"] == "beta_63d, top minus bottom quintile"
    assert "factor_beta_63d" in tables.daily.columns


def test_equal_weight_has_no_ic_but_a_report(run):
    results = run[3]
    tables = report_tables(results[ModelName.EQUAL_WEIGHT])
    assert tables.tables["ic"].height == 0
    assert tables.tables["ic_decay"]["periods"].to_list() == [0, 0, 0, 0]
    back = parse_report_tables(tables_document(tables), daily_document(tables))
    assert back.tables["ic"].columns == tables.tables["ic"].columns
    assert all(v is None or math.isnan(v) for v in back.tables["ic_decay"]["ic_mean"].to_list())
