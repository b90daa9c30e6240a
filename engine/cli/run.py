"""``engine run``: the whole pipeline."""

from __future__ import annotations

from typing import Any

import click

from engine.cli import EXIT_TRACKING, EngineError, choice, data_options, friendly, main
from engine.schema import ModelName, Normalisation, Rebalance, TrainWindow, Weighting


@main.command()
@click.option(
    "--model",
    "-m",
    type=choice(ModelName),
    help="Model to walk forward [env MODEL_TYPE; default ridge].",
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
@click.option("--horizon", type=click.IntRange(min=1), help="Label horizon, trading days [21].")
@click.option("--rebalance", type=choice(Rebalance), help="Rebalance frequency [monthly].")
@click.option("--train-window", type=choice(TrainWindow), help="Training window [expanding].")
@click.option(
    "--min-train-periods",
    type=click.IntRange(min=1),
    help="Rebalance periods of labelled history before the first prediction [12].",
)
@click.option(
    "--normalisation", type=choice(Normalisation), help="Per-date feature normalisation [rank]."
)
@click.option(
    "--sector-neutral",
    is_flag=True,
    default=None,
    help="Demean normalised features within each sector.",
)
@click.option("--alpha", type=click.FloatRange(min=0), help="Ridge penalty [1.0].")
@click.option("--weighting", type=choice(Weighting), help="Portfolio weighting [equal].")
@click.option(
    "--cost-bps",
    type=click.FloatRange(min=0),
    help="Trading cost per unit of turnover, basis points [10].",
)
@click.option(
    "--execution-lag",
    type=click.IntRange(min=0),
    help="Trading days from signal (close of T) to trade [1].",
)
@friendly
def run(no_tracking: bool, **flags: Any) -> None:
    """Run the whole pipeline: data, features, walk-forward model, portfolio, backtest,
    outputs in OUTPUT_PATH, and an MLflow run.

    With no Kaggle files in DATA_PATH it runs on the embedded synthetic archive and
    says so.
    """
    from engine.config import Settings
    from engine.pipeline import run as run_pipeline
    from engine.report import summary, write_outputs
    from engine.sources import resolve_archive

    settings = Settings.from_env({**flags, "tracking": False if no_tracking else None})
    archive = resolve_archive(settings)
    result = run_pipeline(archive, settings)
    files = write_outputs(result, settings.output_path)
    click.echo(summary(result))
    click.echo(f"outputs: {', '.join(str(p) for p in files.values())}")
    if not settings.tracking:
        return
    from engine.tracking import TrackingError, log_run

    try:
        run_id = log_run(result, files, settings)
    except TrackingError as exc:
        raise EngineError(f"{exc} (outputs are on disk)", EXIT_TRACKING) from exc
    click.echo(f"mlflow run {run_id} in {settings.as_params()['tracking_uri']}")
