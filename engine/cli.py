"""The ``engine`` command line. Flags -> Settings; no logic lives here.

User errors (bad input, bad settings, an unusable tracking store) end in one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import click

from engine.schema import ModelName, Normalisation, Rebalance, TrainWindow, Weighting

log = logging.getLogger("engine")

EXIT_USER_ERROR = 1
EXIT_TRACKING = 3


def _user_errors() -> tuple[type[Exception], ...]:
    from engine.archive import ArchiveError
    from engine.config import SettingsError
    from engine.features import FeatureError
    from engine.models import ModelError
    from engine.portfolio import PortfolioError

    return (ArchiveError, SettingsError, FeatureError, ModelError, PortfolioError)


class EngineError(click.ClickException):
    """A user-facing failure: printed as one line, exit code ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USER_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"engine: error: {self.format_message()}", err=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the engine's user errors into one-line EngineErrors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            raise EngineError(str(exc)) from exc

    return wrapper


def _choice(enum: type) -> click.Choice:
    return click.Choice([m.value for m in enum], case_sensitive=False)


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("engine: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("engine").setLevel(level)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More progress output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="engine")
def main(verbose: int, quiet: bool) -> None:
    """A fast, honest S&P 500 portfolio engine.

    Reads the Kaggle "S&P 500 Stocks" archive (or a synthetic stand-in), computes
    point-in-time features, walks models forward with a purge, builds a top-N
    portfolio, backtests it net of costs against the index, and logs the run to MLflow.
    """
    _configure_logging(verbose, quiet)


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--data-path",
            type=click.Path(path_type=Path),
            help="Folder with the three Kaggle CSVs [env DATA_PATH; default ./archive].",
        ),
        click.option(
            "--output-path",
            type=click.Path(path_type=Path),
            help="Folder for outputs and the default MLflow store "
            "[env OUTPUT_PATH; default ./output].",
        ),
        click.option(
            "--cache-path",
            type=click.Path(path_type=Path),
            help="Folder for the Parquet cache and the synthetic default archive "
            "[env CACHE_PATH; default OUTPUT_PATH/cache].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command()
@click.option(
    "--model",
    "-m",
    type=_choice(ModelName),
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
@click.option("--rebalance", type=_choice(Rebalance), help="Rebalance frequency [monthly].")
@click.option("--train-window", type=_choice(TrainWindow), help="Training window [expanding].")
@click.option(
    "--min-train-periods",
    type=click.IntRange(min=1),
    help="Rebalance periods of labelled history before the first prediction [12].",
)
@click.option(
    "--normalisation", type=_choice(Normalisation), help="Per-date feature normalisation [rank]."
)
@click.option(
    "--sector-neutral",
    is_flag=True,
    default=None,
    help="Demean normalised features within each sector.",
)
@click.option("--alpha", type=click.FloatRange(min=0), help="Ridge penalty [1.0].")
@click.option("--weighting", type=_choice(Weighting), help="Portfolio weighting [equal].")
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


@main.group()
def data() -> None:
    """Inspect, validate or synthesize input archives."""


@data.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder to write the three CSVs into [default: DATA_PATH].",
)
@click.option(
    "--symbols",
    type=click.IntRange(min=1),
    default=503,
    show_default=True,
    help="Number of symbols.",
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2010-01-04",
    show_default=True,
    help="First business day.",
)
@click.option(
    "--end",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2024-12-20",
    show_default=True,
    help="Last business day.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--signal",
    type=click.FloatRange(-0.5, 0.5),
    default=0.04,
    show_default=True,
    help="Planted rank IC of 12-1 momentum vs forward 21-day return; 0 = null data.",
)
@friendly
def synth(out: Path | None, symbols: int, start: Any, end: Any, seed: int, signal: float) -> None:
    """Write a deterministic synthetic archive in the exact Kaggle format, with a planted
    momentum signal of known strength."""
    from engine.config import Settings
    from engine.synth import SynthSpec, synthesize

    folder = out or Settings.from_env().data_path
    spec = SynthSpec(
        n_symbols=symbols, start=_as_date(start), end=_as_date(end), seed=seed, signal=signal
    )
    try:
        paths = synthesize(folder, spec)
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    for path in paths.values():
        click.echo(str(path))


@data.command()
@data_options
@friendly
def validate(**flags: Any) -> None:
    """Validate the archive in DATA_PATH, build its Parquet cache, print its fingerprint."""
    from engine.archive import load_archive
    from engine.config import Settings

    settings = Settings.from_env(flags)
    archive = load_archive(settings.data_path, Path(settings.cache_path))
    for warning in archive.warnings:
        click.echo(f"warning: {warning}", err=True)
    rows = archive.prices.select("symbol").collect().height
    click.echo(f"ok: {rows} price rows; fingerprint {archive.fingerprint}")


def _as_date(value: Any) -> date:
    return value.date() if hasattr(value, "date") else value


if __name__ == "__main__":  # pragma: no cover
    main()
