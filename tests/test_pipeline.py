"""The run end to end on a small synthetic archive: stages, comparison, cache, outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.config import RunSpec
from engine.data.archive import load_archive
from engine.features.sets import DEFAULT_FEATURES, feature_set, make_set
from engine.pipeline import StageTimer, prepare, run
from engine.pipeline import frame as frame_module
from engine.pipeline.compare import COLUMNS, run_all
from engine.pipeline.frame import frame_file, frame_key, model_frame
from engine.report import (
    CAVEATS,
    comparison_files,
    metrics_document,
    publish_outputs,
    write_outputs,
)
from engine.schema import ModelName, Weighting

ISSUE_METRICS = (
    "r2_oos", "ic_mean", "ic_std", "icir", "ic_tstat", "hit_rate", "net_cagr", "gross_cagr",
    "net_volatility", "net_sharpe", "net_sortino", "net_max_drawdown", "net_calmar",
    "alpha_vs_index", "beta_vs_index", "tracking_error_vs_index", "information_ratio_vs_index",
    "turnover_annual", "net_var_95", "net_cvar_95", "excess_cagr_vs_index",
    "excess_cagr_vs_universe", "index_cagr", "universe_cagr",
)  # fmt: skip


@pytest.fixture(scope="module")
def archive(small_archive: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_archive(small_archive, tmp_path_factory.mktemp("pipeline-cache"))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> RunSpec:
    out = tmp_path_factory.mktemp("pipeline-out")
    return RunSpec().replace(**{"paths.output": out, "tracking.enabled": False})


@pytest.fixture(scope="module")
def comparison(archive, base: RunSpec):
    return run_all(archive, base)


def test_a_run_reports_every_metric_the_issue_lists(archive, base: RunSpec):
    result = run(archive, base)
    missing = [k for k in ISSUE_METRICS if k not in result.metrics]
    assert missing == []
    assert np.isfinite([result.metrics[k] for k in ISSUE_METRICS]).all()
    assert result.ic.height == result.metrics["ic_periods"] > 10
    assert result.model is not None and len(result.model.coef) == len(DEFAULT_FEATURES)


def test_a_run_without_the_report_leaves_out_only_the_signal_tables(archive, base: RunSpec):
    full, bare = run(archive, base), run(archive, base, report=False)
    assert set(full.signal) == {"ic_decay", "quintiles", "quintile_spread"}
    assert bare.signal == {}
    assert json.dumps(bare.metrics, sort_keys=True) == json.dumps(full.metrics, sort_keys=True)
    assert bare.predictions.equals(full.predictions) and bare.equity.equals(full.equity)


def test_trades_follow_signals_after_the_lag_and_the_curve_starts_after_the_first(archive, base):
    result = run(archive, base.replace(**{"backtest.execution_lag": 2}))
    history = result.history
    calendar = result.equity["date"].to_list()
    first_trade = history["trade_date"].min()
    assert result.equity["date"].min() > first_trade
    pairs = history.select("date", "trade_date").unique().drop_nulls().sort("date")
    for signal, trade in pairs.iter_rows():
        if signal in calendar and trade in calendar:
            assert calendar.index(trade) - calendar.index(signal) == 2
    totals = history.group_by("date").agg(pl.col("weight").sum())["weight"]
    assert (totals <= 1 + 1e-9).all() and (totals > 0.999).all()


def test_every_model_is_backtested_on_the_same_dates(comparison):
    dates = {
        r.spec.model.name: r.history["date"].unique().sort().to_list() for r in comparison.results
    }
    assert len({tuple(d) for d in dates.values()}) == 1
    spans = {(r.equity["date"].min(), r.equity["date"].max()) for r in comparison.results}
    assert len(spans) == 1


def test_comparison_table_has_every_model_and_column(comparison):
    table = comparison.table
    assert table["model"].to_list() == [m.value for m in ModelName]
    assert table.columns == ["model", *COLUMNS]
    assert table.filter(pl.col("model") == "ridge")["deflated_sharpe_vs_universe"].is_finite().all()
    baselines = table.filter(pl.col("model").is_in(["momentum", "equal_weight"]))
    assert baselines["r2_oos"].is_nan().all()  # baselines do not forecast returns
    assert all(r.metrics["trials"] == len(ModelName) for r in comparison.results)


def test_equal_weight_model_tracks_the_universe_benchmark(comparison):
    """The baseline holds every scored name equally, rebalanced monthly; the benchmark
    holds every name daily. Over a few years they differ by drift and costs only."""
    ew = next(r for r in comparison.results if r.spec.model.name is ModelName.EQUAL_WEIGHT)
    assert abs(ew.metrics["excess_cagr_vs_universe"]) < 0.02
    assert ew.metrics["beta_vs_universe"] == pytest.approx(1.0, abs=0.05)


def test_index_comparisons_use_only_the_days_the_index_exists(archive, base):
    late = dataclasses.replace(
        archive, index=archive.index.filter(pl.col("date") >= pl.date(2016, 6, 1))
    )
    result = run(late, base)
    assert 0 < result.metrics["index_coverage"] < 1
    assert result.metrics["days_vs_index"] < result.metrics["backtest_days"]
    common = result.equity.filter(pl.col("index").is_not_nan())
    expected = (1 + common["net"]).product() ** (252 / common.height) - 1
    assert result.metrics["net_cagr_vs_index_days"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "weighting", [Weighting.INVERSE_VOL, Weighting.MIN_VARIANCE, Weighting.MEAN_VARIANCE]
)
def test_weighting_schemes_run_with_caps(archive, base, weighting):
    settings = base.replace(**{
        "model.name": ModelName.LASSO, "portfolio.weighting": weighting,
        "portfolio.max_weight": 0.15, "portfolio.sector_cap": 0.35,
    })  # fmt: skip
    result = run(archive, settings)
    assert (result.history["weight"] <= 0.15 + 1e-9).all()
    assert result.metrics["net_volatility"] > 0


def test_model_frame_cache_hits_and_keys_on_everything_it_depends_on(archive, base, monkeypatch):
    core = feature_set("core")
    first = frame_file(archive, base.features, base.paths, core).frame()
    again = frame_file(archive, base.features, base.paths, core).frame()
    assert first.equals(again)
    assert first.equals(model_frame(archive, base.features, core))
    fingerprint, spec = archive.fingerprint, base.features
    key = frame_key(fingerprint, spec, core)
    assert key != frame_key(fingerprint, dataclasses.replace(spec, horizon=5), core)
    assert key != frame_key(fingerprint, dataclasses.replace(spec, sector_neutral=True), core)
    assert key != frame_key("0" * 64, spec, core)
    fewer = make_set("core", [(f.name, f.expression, "") for f in core.factors[:-1]])
    assert key != frame_key(fingerprint, spec, fewer)
    other = base.replace(**{"model.name": ModelName.LASSO, "portfolio.top_stocks": 3})
    assert key == frame_key(fingerprint, other.features, core)
    monkeypatch.setattr(frame_module, "FRAME_VERSION", frame_module.FRAME_VERSION + 1)
    assert key != frame_key(fingerprint, spec, core)


def test_model_frame_key_is_the_expressions_not_the_set_name(archive, base, tmp_path) -> None:
    """A file of core's factors (spaced differently) keys like core; one changed window
    does not; the set's name is no part of the key."""
    core = feature_set("core")
    copy = tmp_path / "copy.toml"
    copy.write_text("".join(f'{f.name} = "{f.expression.replace(", ", ",")}"\n'
                            for f in core.factors))  # fmt: skip
    fingerprint = archive.fingerprint
    renamed = dataclasses.replace(base.features, set=str(copy))
    key = frame_key(fingerprint, base.features, core)
    assert key == frame_key(fingerprint, renamed, feature_set(copy))
    changed = copy.read_text().replace("Mean($close,20)", "Mean($close,21)")
    assert changed != copy.read_text()
    copy.write_text(changed)
    assert key != frame_key(fingerprint, renamed, feature_set(copy))


def test_a_user_set_walks_forward_and_momentum_keeps_its_own_signal(archive, base, tmp_path):
    """A set without mom_12_1: the models use its factors only; the momentum baseline
    scores core's 12-1 momentum, exactly as with core."""
    path = tmp_path / "two.toml"
    path.write_text('mom_10 = "$close / Ref($close, 10) - 1"\n'
                    'hl = "Mean(($high - $low) / $close, 10)"\n')  # fmt: skip
    spec = base.replace(**{"features.set": str(path)})
    ridge, momentum = run_all(archive, spec, (ModelName.RIDGE, ModelName.MOMENTUM)).results
    assert ridge.features == ("mom_10", "hl") and len(ridge.model.coef) == 2
    assert ridge.feature_set.expressions["hl"] == "Mean(($high - $low) / $close, 10)"
    with_core = run(archive, base.with_model(ModelName.MOMENTUM))
    assert momentum.predictions.equals(with_core.predictions)


def test_prepare_refuses_an_archive_too_short_to_train(archive, base):
    from engine.research.models import ModelError

    short = dataclasses.replace(
        archive, prices=archive.prices.filter(pl.col("date") < pl.date(2014, 3, 1))
    )
    with pytest.raises(ModelError):
        prepare(short, base.replace(**{"paths.frame_cache": False}), StageTimer())


def test_outputs_report_and_metrics_document(comparison, tmp_path: Path):
    result = comparison.results[0]
    files = write_outputs(result, tmp_path)
    for key in ("portfolio", "holdings", "equity", "ic", "attribution", "metrics",
                "report_daily", "report_tables", "report"):  # fmt: skip
        assert files[key].is_file() and files[key].stat().st_size > 0
    assert files["report"].name == "report_ridge.html"
    assert files["report"].read_text().lower().startswith("<!doctype html>")
    assert pl.read_csv(files["portfolio"]).columns == [
        "date",
        "symbol",
        "name",
        "sector",
        "weight",
        "score",
    ]
    doc = json.loads(files["metrics"].read_text())
    assert doc["caveats"] == list(CAVEATS)
    assert "price index" in doc["benchmarks"]["index"]
    assert sum(row["total"] for row in doc["attribution"]) == pytest.approx(
        result.attribution["total"].sum()
    )
    assert metrics_document(result)["model"] == "ridge"
    fit = result.factor_fit.table
    assert doc["metrics"]["factor_alpha"] == pytest.approx(fit["coef"][0])
    assert doc["metrics"]["factor_momentum_tstat"] == pytest.approx(fit["tstat"][2])
    assert doc["metrics"]["factor_r2"] == pytest.approx(result.factor_fit.r2)
    shared = publish_outputs(tmp_path, [comparison_files(comparison.table, [])])[0]
    assert pl.read_csv(shared["comparison"]).height == len(ModelName)
    assert "report_comparison" not in shared  # the page is tested in test_report_html
    assert list(tmp_path.glob(".*.tmp")) == []  # atomic writes leave no temporary files


def test_cli_run_all_prints_the_table_and_the_caveats(small_archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["run", "--model", "all", "--no-tracking", "--no-plots", "--data-path", str(small_archive),
         "--output-path", str(out), "--refit-every", "24"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "deflated Sharpe" in result.stdout and "caveat: Survivorship" in result.stdout
    assert "price index" in result.stdout
    assert (out / "comparison.csv").is_file()
    assert {p.name for p in out.glob("metrics_*.json")} == {
        f"metrics_{m.value}.json" for m in ModelName
    }
    assert not list(out.glob("report_*"))
    assert "alpha, t: annualised alpha" in result.stdout


def test_tuned_linear_run_chooses_its_penalty_from_the_grid(archive, base):
    from engine.research.models.tuning import ENET_GRID

    tuned = {"model.name": ModelName.LASSO, "model.tune": True, "model.validation_periods": 6}
    result = run(archive, base.replace(**tuned))
    assert result.metrics["model_alpha_median"] in ENET_GRID


def test_cli_flags_reach_the_settings_recorded_with_the_run(small_archive: Path, tmp_path: Path):
    flags = ["--model", "lasso", "--weighting", "inverse_vol", "--max-weight", "0.15",
             "--sector-cap", "0.3", "--alpha", "0.0002", "--rebalance", "quarterly",
             "--cost-bps", "25", "--execution-lag", "2", "--min-train-periods", "4"]  # fmt: skip
    result = CliRunner().invoke(
        main,
        ["run", "--no-tracking", "--data-path", str(small_archive),
         "--output-path", str(tmp_path), *flags],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "metrics_lasso.json").read_text())["settings"]
    expected = {"model.name": "lasso", "portfolio.weighting": "inverse_vol",
                "portfolio.max_weight": "0.15", "portfolio.sector_cap": "0.3",
                "model.alpha": "0.0002", "walk_forward.rebalance": "quarterly",
                "backtest.cost_bps": "25.0", "backtest.execution_lag": "2",
                "walk_forward.min_train_periods": "4"}  # fmt: skip
    assert {k: recorded[k] for k in expected} == expected
    holdings = pl.read_csv(tmp_path / "holdings_lasso.csv")
    assert holdings["weight"].max() <= 0.15 + 1e-9
    assert "after factors: alpha " in result.stdout and "report_lasso.html" in result.stdout
    assert "quarterly rebalance" in (tmp_path / "report_lasso.html").read_text()


def test_predict_refuses_a_set_that_no_longer_gives_the_models_inputs(base, tmp_path) -> None:
    from engine.features import FeatureError
    from engine.pipeline.predict import scored_set

    path = tmp_path / "edited.toml"
    path.write_text('mom_10 = "$close / Ref($close, 10) - 1"\n')
    spec = base.replace(**{"features.set": str(path)})
    assert scored_set(spec, ("mom_10",)).names == ("mom_10",)
    with pytest.raises(FeatureError, match="not the model's 2 inputs"):
        scored_set(spec, ("mom_10", "hl"))


def test_predict_compares_the_expressions_not_only_the_names(base, tmp_path) -> None:
    """Same name, another expression: refused; other spacing, same tree: accepted."""
    from engine.features import FeatureError
    from engine.pipeline.predict import scored_set

    path = tmp_path / "edited.toml"
    path.write_text('mom_10 = "$close / Ref($close, 10) - 1"\n')
    spec = base.replace(**{"features.set": str(path)})
    trained = {"mom_10": "$close/Ref( $close,10 )-1"}
    assert scored_set(spec, ("mom_10",), trained).names == ("mom_10",)
    path.write_text('mom_10 = "$close / Ref($close, 12) - 1"\n')
    with pytest.raises(FeatureError, match=r"factor 'mom_10' is now .*Ref\(\$close, 12\)"):
        scored_set(spec, ("mom_10",), trained)


@pytest.mark.slow
def test_every_model_walks_forward_on_alpha158(archive, base) -> None:
    """`engine run --model all --features alpha158`: 157 factors into every model."""
    spec = base.replace(**{"features.set": "alpha158", "model.train_dates": 40})
    comparison = run_all(archive, spec)
    assert comparison.table.height == len(ModelName)
    assert {len(r.features) for r in comparison.results} == {157}
    ridge = next(r for r in comparison.results if r.spec.model.name is ModelName.RIDGE)
    assert len(ridge.model.coef) == 157 and np.isfinite(ridge.metrics["ic_mean"])


def test_work_started_on_a_thread_hands_back_its_result_or_its_error():
    from engine.pipeline.threads import started

    assert started(sum, [1, 2, 3]).result(timeout=10) == 6
    with pytest.raises(ZeroDivisionError):
        started(divmod, 1, 0).result(timeout=10)
