"""``engine predict``: the portfolio for one date from a registered model (the champion
by default), with the features computed by the same code path as ``engine run``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from engine.cli import EXIT_TRACKING, EngineError, choice, data_options, friendly, main
from engine.schema import ModelName

# Settings a model was trained and evaluated with that decide its features and portfolio.
MODEL_SETTINGS = (
    "model", "horizon", "normalisation", "sector_neutral", "top_stocks", "weighting",
    "max_weight", "sector_cap", "risk_aversion", "execution_lag",
)  # fmt: skip
PORTFOLIO_COLUMNS = ("symbol", "name", "sector", "weight", "score")


def settings_of_run(settings: Any, params: dict[str, str], keep: dict[str, Any]) -> Any:
    """``settings`` with the model's own feature and portfolio settings (its run's params),
    except those the user gave as flags (``keep``)."""
    changes = {
        name: _parse(params[name], getattr(settings, name))
        for name in MODEL_SETTINGS
        if name in params and keep.get(name) is None
    }
    return settings.replace(**changes)


def _parse(raw: str, current: Any) -> Any:
    if raw == "None":
        return None
    if isinstance(current, bool):
        return raw == "True"
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float) or current is None:
        return float(raw)
    return raw  # enums: Settings coerces their values


def features_on(archive: Any, settings: Any, features: tuple[str, ...], as_of: dt.date) -> Any:
    """Normalised features of every scoreable symbol on the last trading day <= ``as_of``
    (the same cached model frame ``engine run`` uses, read for that day's rows only);
    (day, frame)."""
    import numpy as np

    from engine.pipeline.frame import frame_files, model_frame
    from engine.schema import DATE

    files = frame_files(archive, settings, features)
    frame = model_frame(archive, settings, features) if files is None else None
    days = files.column("date") if frame is None else frame[DATE].to_physical().to_numpy()
    limit = (as_of - dt.date(1970, 1, 1)).days
    if not (days <= limit).any():
        first = dt.date(1970, 1, 1) + dt.timedelta(int(days.min())) if days.size else "never"
        raise EngineError(f"no scoreable day on or before {as_of} (first: {first})")
    day = int(days[days <= limit].max())
    rows = np.flatnonzero(days == day)
    found = files.frame(rows) if frame is None else frame[rows]
    return found[DATE][0], found


def portfolio_on(archive: Any, settings: Any, day_frame: Any, scores: Any) -> Any:
    """Holdings (symbol, name, sector, weight, score) from the scores of one day, built by
    the run's own portfolio code (top-N, weighting scheme, caps)."""
    import polars as pl

    from engine.pipeline import evaluate as ev
    from engine.pipeline import latest_holdings
    from engine.pipeline.frame import market
    from engine.schema import DATE, SCORE, SYMBOL

    predictions = day_frame.select(DATE, SYMBOL).with_columns(pl.Series(SCORE, scores))
    spec = ev.portfolio_spec(settings, settings.model, predictions.height)
    history = ev.holdings_history(predictions, spec, market(archive), settings.execution_lag)
    return latest_holdings(history, archive.companies).select(PORTFOLIO_COLUMNS)


@main.command()
@click.option(
    "--as-of",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Date of the portfolio (the last trading day on or before it is used).",
)
@click.option("--model-uri", help="MLflow model URI [models:/sp500-<model>@champion].")
@click.option(
    "--model",
    "-m",
    type=choice(ModelName),
    help="Model whose champion to use [env MODEL_TYPE; ridge].",
)
@click.option("--registered-model", help="Registry name, instead of sp500-<model>.")
@click.option(
    "--top-stocks",
    "-n",
    type=click.IntRange(min=1),
    help="Names held [default: the model's own run setting].",
)
@data_options
@click.option(
    "--tracking-uri", help="MLflow tracking URI [env MLFLOW_TRACKING_URI; OUTPUT_PATH/mlflow.db]."
)
@friendly
def predict(as_of: dt.datetime, model_uri: str | None, **flags: Any) -> None:  # fmt: skip
    """Write OUTPUT_PATH/predict_<model>_<date>.csv: the portfolio for AS_OF from a
    registered model, scored on features computed exactly as in ``engine run`` (with the
    model's own feature settings, read from the run that logged it)."""
    from engine.config import Settings
    from engine.data.sources import resolve_archive
    from engine.io.files import atomic_write
    from engine.lifecycle import registry, tracking

    settings = Settings.from_env(flags)
    uri = model_uri or f"models:/{settings.registered_model_name}@{registry.CHAMPION}"
    try:
        tracking.configure(settings)
        tracking.probe(settings.mlflow_uri, settings.tracking_timeout)
        client = tracking.open_client(settings)
        with tracking.store_errors(settings, f"loading {uri}"):
            scorer = registry.load_scorer(client, uri)
    except tracking.TrackingError as exc:
        raise EngineError(str(exc), EXIT_TRACKING) from exc
    model_settings = settings_of_run(settings, scorer.params, flags)
    archive = resolve_archive(model_settings)
    day, frame = features_on(archive, model_settings, scorer.features, as_of.date())
    holdings = portfolio_on(archive, model_settings, frame, scorer.score(frame))
    name = f"predict_{model_settings.model.value}_{day}.csv"
    path = atomic_write(Path(model_settings.output_path) / name, holdings.write_csv)
    click.echo(f"{uri}: {holdings.height} names on {day} from {frame.height} scored -> {path}")
