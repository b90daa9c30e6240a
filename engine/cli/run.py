"""``engine run``: the whole pipeline, for one model or for all of them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from engine.cli import EXIT_TRACKING, PATHS, EngineError, friendly, main, spec_from, spec_options
from engine.config import ALL_MODELS
from engine.io.locks import output_lock
from engine.schema import ModelName, RunEngine

# Every setting of a run that a flag may change, in --help order.
RUN_SETTINGS = (
    "portfolio.top_stocks", *PATHS, "tracking.uri", "tracking.enabled", "paths.frame_cache", "paths.strict_data",
    "tracking.registered_model", "promotion.metrics", "promotion.thresholds",
    "features.set", "features.horizon", "walk_forward.rebalance", "walk_forward.train_window",
    "walk_forward.rolling_periods", "walk_forward.min_train_periods",
    "features.normalisation", "features.sector_neutral", "model.alpha", "model.l1_ratio",
    "model.tune", "model.validation_periods", "model.refit_every", "model.train_dates",
    "model.n_jobs", "portfolio.weighting", "portfolio.max_weight", "portfolio.sector_cap",
    "portfolio.risk_aversion", "backtest.cost_bps", "backtest.execution_lag", "model.seed",
    "compute.engine", "compute.spark_master", "compute.spark_conf",
)  # fmt: skip


@main.command()
@click.option(
    "--model",
    "-m",
    type=click.Choice([m.value for m in ModelName] + [ALL_MODELS], case_sensitive=False),
    help="Model to walk forward, or 'all' to compare every model on the same data "
    "[env MODEL_TYPE; default ridge].",
)
@spec_options(*RUN_SETTINGS)
@click.option(
    "--no-report",
    "--no-plots",
    "no_report",
    is_flag=True,
    help="Do not write the HTML research report (report_<model>.html and its data), "
    "nor compute the signal tables that only it shows.",
)
@friendly
def run(model: str | None, no_report: bool, **flags: Any) -> None:
    """Run the whole pipeline: data, features, walk-forward model, portfolio, backtest,
    outputs in OUTPUT_PATH, and an MLflow run.

    With no Kaggle files in DATA_PATH it runs on the embedded synthetic archive and
    says so. ``--model all`` runs every model on the same data and adds comparison.csv
    and report_comparison.html.
    """
    from engine.config import requested_models

    models = requested_models(model)
    spec = spec_from(flags).with_model(models[0])
    if spec.compute.engine is RunEngine.SPARK:  # before anything starts: a one-line refusal
        from engine.spark.sums import check_model

        for name in models:
            check_model(name)
    # Runs compute in parallel; each holds the output folder's lock from its first write to
    # the end of tracking, so the folder and each run's artifacts are one run's files.
    with contextlib.ExitStack() as hold:
        tracker = None
        if spec.tracking.enabled:  # mlflow imports and probes (a worker process) while we compute
            from engine.lifecycle.tracking.worker import start

            tracker = hold.enter_context(start(spec))
        # Only now: the archive readers' imports (Polars, numpy) would delay the worker's
        # start, and the worker's imports are the longest chain of a tracked run.
        from engine.data.sources import resolve_archive

        archive = resolve_archive(spec.paths)
        report = not no_report
        if len(models) > 1:
            results, files = _run_all(archive, spec, report, hold)
        else:
            results, files = _run_one(archive, spec, report, hold)
        if spec.tracking.enabled:
            _track(results, files, spec, tracker)


def _run_one(
    archive: Any, spec: Any, report: bool, hold: contextlib.ExitStack
) -> tuple[list, list[dict[str, Path]]]:
    from engine.pipeline import run as run_pipeline
    from engine.report import summary, write_outputs

    if spec.compute.engine is RunEngine.SPARK:
        from engine.spark.pipeline import run_in_spark

        result = run_in_spark(archive, spec, report=report)
    else:
        result = run_pipeline(archive, spec, report=report)
    hold.enter_context(output_lock(spec.paths.output))
    files = write_outputs(result, spec.paths.output, report)
    click.echo(summary(result))
    click.echo(f"outputs in {spec.paths.output}: {', '.join(p.name for p in files.values())}")
    return [result], [files]


def _run_all(
    archive: Any, spec: Any, report: bool, hold: contextlib.ExitStack
) -> tuple[list, list[dict[str, Path]]]:
    from engine.pipeline.compare import run_all
    from engine.report import comparison_files, comparison_summary, output_files, publish_outputs

    output = spec.paths.output
    comparison = run_all(archive, spec, report=report)
    groups = [output_files(r, report) for r in comparison.results]
    groups.append(comparison_files(comparison.table, groups))
    models = tuple(r.spec.model.name for r in comparison.results)
    hold.enter_context(output_lock(output))
    *published, shared = publish_outputs(output, groups, models)  # one result set
    files = [{**model_files, **shared} for model_files in published]
    click.echo(
        f"every model on {archive.source.value} data (fingerprint {archive.fingerprint[:12]})"
    )
    click.echo(comparison_summary(comparison.table))
    pages = ", report_comparison.html" if report else ""
    click.echo(f"outputs in {output}: comparison.csv{pages} and per-model files")
    return list(comparison.results), files


def _track(results: list, files: list[dict[str, Path]], spec: Any, tracker: Any) -> None:
    from engine.config import redact_uri
    from engine.lifecycle.tracking.errors import TrackingError

    where = redact_uri(spec.mlflow_uri)
    for result, artifacts in zip(results, files, strict=True):
        try:
            tracked = tracker.log_run(result, artifacts, result.spec)
        except TrackingError as exc:
            raise EngineError(f"{exc} (outputs are on disk)", EXIT_TRACKING) from exc
        click.echo(f"mlflow run {tracked.run_id} ({result.spec.model.name.value}) in {where}")
        for line in tracked.summary_lines():
            click.echo(f"  {line}")
