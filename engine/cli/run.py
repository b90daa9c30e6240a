"""``engine run``: the whole pipeline, for one model or for all of them."""

from __future__ import annotations

import atexit
import contextlib
import gc
from pathlib import Path
from typing import Any

import click

from engine.cli import EXIT_TRACKING, EngineError, choice, data_options, friendly, main
from engine.io.locks import output_lock
from engine.schema import ModelName, Normalisation, Rebalance, TrainWindow, Weighting

ALL_MODELS = "all"


def _research_options(fn: Any) -> Any:
    """Walk-forward, model and portfolio flags (each maps to a Settings field)."""
    options = [
        click.option("--horizon", type=click.IntRange(min=1), help="Label horizon, trading days [21]."),
        click.option("--rebalance", type=choice(Rebalance), help="Rebalance frequency [monthly]."),
        click.option("--train-window", type=choice(TrainWindow), help="Training window [expanding]."),
        click.option("--rolling-periods", type=click.IntRange(min=1), help="Rebalance periods in a rolling window [60]."),
        click.option("--min-train-periods", type=click.IntRange(min=1), help="Rebalance periods of labelled history before the first prediction [12]."),
        click.option("--normalisation", type=choice(Normalisation), help="Per-date feature normalisation [rank]."),
        click.option("--sector-neutral", is_flag=True, default=None, help="Demean normalised features within each sector."),
        click.option("--alpha", type=click.FloatRange(min=0), help="Linear penalty, scikit-learn units [ridge 1.0, lasso 1e-4, elasticnet 2e-4]."),
        click.option("--l1-ratio", type=click.FloatRange(0, 1), help="Elastic net L1 share [0.5]."),
        click.option("--tune", is_flag=True, default=None, help="Choose the linear penalty at each rebalance by inner time-ordered validation."),
        click.option("--validation-periods", type=click.IntRange(min=1), help="Training periods held out by --tune [12]."),
        click.option("--refit-every", type=click.IntRange(min=1), help="Rebalances between tree-model refits [one year]."),
        click.option("--train-dates", type=click.IntRange(min=1), help="Dates sampled per tree-model refit [120]."),
        click.option("--n-jobs", type=click.IntRange(min=1), help="Threads for tree models [1]; 2 on an idle 2-core machine."),
        click.option("--weighting", type=choice(Weighting), help="Portfolio weighting [equal]."),
        click.option("--max-weight", type=click.FloatRange(0, 1, min_open=True), help="Cap on each name's weight [0.2; never below 1/TOP_STOCKS]."),
        click.option("--sector-cap", type=click.FloatRange(0, 1, min_open=True), help="Cap on each sector's weight [none]."),
        click.option("--risk-aversion", type=click.FloatRange(min=0, min_open=True), help="Mean-variance lambda, annualised [1.0]."),
        click.option("--cost-bps", type=click.FloatRange(min=0), help="Trading cost per unit of turnover, basis points [10]."),
        click.option("--execution-lag", type=click.IntRange(min=0), help="Trading days from signal (close of T) to trade [1]."),
        click.option("--seed", type=int, help="Seed of every random choice [0]."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command()
@click.option(
    "--model",
    "-m",
    type=click.Choice([m.value for m in ModelName] + [ALL_MODELS], case_sensitive=False),
    help="Model to walk forward, or 'all' to compare every model on the same data "
    "[env MODEL_TYPE; default ridge].",
)
@click.option(
    "--top-stocks",
    "-n",
    type=click.IntRange(min=1),
    help="Names held in the portfolio [env TOP_STOCKS; default 10].",
)
@data_options
@click.option(
    "--tracking-uri",
    help="MLflow tracking URI [env MLFLOW_TRACKING_URI; default "
    "a SQLite store OUTPUT_PATH/mlflow.db].",
)
@click.option("--no-tracking", is_flag=True, help="Do not log to MLflow (and do not import it).")
@click.option("--no-plots", is_flag=True, help="Do not write the PNG plots.")
@click.option(
    "--no-feature-cache", is_flag=True, help="Recompute the normalised features even if cached."
)
@click.option(
    "--registered-model",
    help="Registry name of the model [default sp500-<model>].",
)
@click.option(
    "--promote-metric",
    "promote_metrics",
    multiple=True,
    callback=lambda ctx, param, value: value or None,
    help="Metric gating promotion to champion (repeatable; 'ic', 'ir', 'r2' or any metric "
    "name; higher is better) [ic, ir].",
)
@click.option(
    "--promote-threshold",
    "promote_thresholds",
    type=float,
    multiple=True,
    callback=lambda ctx, param, value: value or None,
    help="Absolute minimum of each --promote-metric, in order [0.01, 0].",
)
@_research_options
@friendly
def run(no_tracking: bool, no_plots: bool, no_feature_cache: bool, **flags: Any) -> None:
    """Run the whole pipeline: data, features, walk-forward model, portfolio, backtest,
    outputs in OUTPUT_PATH, and an MLflow run.

    With no Kaggle files in DATA_PATH it runs on the embedded synthetic archive and
    says so. ``--model all`` runs every model on the same data and adds comparison.csv.
    """
    from engine.config import Settings

    every = (flags.get("model") or "").lower() == ALL_MODELS
    overrides = {
        **flags,
        "model": None if every else flags.get("model"),
        "tracking": False if no_tracking else None,
        "feature_cache": False if no_feature_cache else None,
    }
    settings = Settings.from_env(overrides)
    # At exit the interpreter's last collection walks every object the run made (~0.1 s);
    # frozen, it skips them. Safe: every output, cache and store write is closed (flushed,
    # fsynced) explicitly before this; only cyclic garbage is left for the OS to reclaim.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    # Runs compute in parallel; each holds the output folder's lock from its first write to
    # the end of tracking, so the folder and each run's artifacts are one run's files.
    with contextlib.ExitStack() as hold:
        prepared = None
        if settings.tracking:  # mlflow imports and probes (a child process) while we compute
            from engine.lifecycle.worker import start_tracking

            prepared = hold.enter_context(start_tracking(settings))
        # Only now: its imports (Polars, numpy: ~0.3 s) would delay the worker's start,
        # and the worker's imports are the longest chain of a tracked run.
        from engine.data.sources import resolve_archive

        archive = resolve_archive(settings)
        plots = not no_plots
        if every:
            results, files = _run_all(archive, settings, plots, hold)
        else:
            results, files = _run_one(archive, settings, plots, hold)
        if settings.tracking:
            _track(results, files, settings, prepared)


def _run_one(
    archive: Any, settings: Any, plots: bool, hold: contextlib.ExitStack
) -> tuple[list, list[dict[str, Path]]]:
    from engine.pipeline import run as run_pipeline
    from engine.report import summary, write_outputs

    result = run_pipeline(archive, settings)
    hold.enter_context(output_lock(settings.output_path))
    files = write_outputs(result, settings.output_path, plots)
    click.echo(summary(result))
    click.echo(f"outputs in {settings.output_path}: {', '.join(p.name for p in files.values())}")
    return [result], [files]


def _run_all(
    archive: Any, settings: Any, plots: bool, hold: contextlib.ExitStack
) -> tuple[list, list[dict[str, Path]]]:
    from engine.pipeline.compare import run_all
    from engine.report import comparison_summary, write_comparison, write_outputs

    comparison = run_all(archive, settings)
    hold.enter_context(output_lock(settings.output_path))
    shared = write_comparison(comparison.table, comparison.results, settings.output_path, plots)
    files = [
        {**write_outputs(r, settings.output_path, plots), **shared} for r in comparison.results
    ]
    click.echo(
        f"every model on {archive.source.value} data (fingerprint {archive.fingerprint[:12]})"
    )
    click.echo(comparison_summary(comparison.table))
    click.echo(f"outputs in {settings.output_path}: comparison.csv and per-model files")
    return list(comparison.results), files


def _track(results: list, files: list[dict[str, Path]], settings: Any, prepared: Any) -> None:
    from engine.lifecycle.worker import TrackingError

    where = settings.as_params()["tracking_uri"]
    for result, artifacts in zip(results, files, strict=True):
        try:
            tracked = prepared.log_run(result, artifacts, result.settings)
        except TrackingError as exc:
            raise EngineError(f"{exc} (outputs are on disk)", EXIT_TRACKING) from exc
        click.echo(f"mlflow run {tracked.run_id} ({result.settings.model.value}) in {where}")
        for line in tracked.summary_lines():
            click.echo(f"  {line}")
