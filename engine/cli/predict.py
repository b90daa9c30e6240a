"""``engine predict``: the portfolio for one date from a registered model (the champion
by default), with the features computed by the same code path as ``engine run``."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from typing import Any

import click

from engine.cli import (
    PATHS,
    choice,
    friendly,
    main,
    spec_from,
    spec_options,
)
from engine.schema import BASELINES, ModelName, RunEngine

SERVABLE = frozenset(m.value for m in ModelName if m not in BASELINES)  # have a fitted scorer


def model_spec(user: Any, logged: Any, flags: dict[str, Any]) -> Any:
    """The spec to predict with: the logged run's (features, model, portfolio, backtest),
    with the user's paths and tracking store, and the portfolio size if given as a flag."""
    spec = dataclasses.replace(logged, paths=user.paths, tracking=user.tracking)
    if flags.get("portfolio__top_stocks") is not None:
        spec = dataclasses.replace(spec, portfolio=user.portfolio)
    return spec


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
    "model__name",
    type=click.Choice(sorted(SERVABLE), case_sensitive=False),
    help="Model whose champion to use (models with a fitted scorer) [env MODEL_TYPE; ridge].",
)
@spec_options("tracking.registered_model", "portfolio.top_stocks", *PATHS, "tracking.uri")
@click.option(
    "--engine",
    "engine_name",
    type=choice(RunEngine),
    default=RunEngine.POLARS.value,
    show_default=True,
    help="Score in this process, or on Spark through MLflow's Spark UDF (engine[spark]).",
)
@spec_options("compute.spark_master", "compute.spark_conf")
@friendly
def predict(as_of: dt.datetime, model_uri: str | None, engine_name: str, **flags: Any) -> None:
    """Write OUTPUT_PATH/predict_<model>_<date>.csv: the portfolio for AS_OF from a
    registered model, scored on features computed exactly as in ``engine run`` (with the
    model's own settings, read from the spec.json its run logged). With ``--engine spark``
    the scores come from ``mlflow.pyfunc.spark_udf`` on a Spark session."""
    from engine.data.sources import resolve_archive
    from engine.io import resultset
    from engine.io.locks import output_lock
    from engine.lifecycle import registry
    from engine.lifecycle.tracking import store
    from engine.pipeline.predict import predict as predict_on

    user = spec_from(flags)
    on_spark = RunEngine(engine_name) is RunEngine.SPARK
    if on_spark:
        from engine.spark.session import check_available

        check_available()
    uri = model_uri or f"models:/{user.registered_model_name}@{registry.CHAMPION}"
    client = store.connect(user)  # a TrackingError: exit 3 (``friendly``)
    with store.store_errors(user, f"loading {uri}"):
        scorer = registry.load_scorer(client, uri)
    spec = model_spec(user, scorer.spec, flags)
    archive = resolve_archive(spec.paths)
    fitted_at = dt.date.fromisoformat(scorer.fitted_at) if scorer.fitted_at else None
    with contextlib.ExitStack() as hold:
        score = scorer.score
        if on_spark:
            from engine.lifecycle.spark_scoring import spark_scorer
            from engine.spark.session import spark_session

            spark = hold.enter_context(spark_session(user.compute))
            score = spark_scorer(spark, uri, scorer.features)
        made = predict_on(archive, spec, scorer.features, score, as_of.date(), fitted_at,
                          scorer.expressions)  # fmt: skip
    name = f"predict_{spec.model.name.value}_{made.day}.csv"
    with output_lock(spec.paths.output):  # published beside the run's files, as one set
        resultset.publish(spec.paths.output, {name: made.holdings.write_csv})
    path = spec.paths.output / name
    click.echo(f"{uri}: {made.holdings.height} names on {made.day} from {made.scored} scored "
               f"-> {path}")  # fmt: skip
