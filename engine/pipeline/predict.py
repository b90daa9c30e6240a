"""The portfolio for one date from a fitted scorer: the features of that date computed
exactly as ``engine run`` computes them (the same cached model frame), scored, and turned
into weights by the run's own portfolio code."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.config import RunSpec
from engine.data.archive import Archive
from engine.features import FeatureError
from engine.features.parser import parse
from engine.features.sets import FeatureSet, feature_set
from engine.pipeline import evaluate as ev
from engine.pipeline import latest_holdings
from engine.pipeline.frame import frame_file, model_frame
from engine.pipeline.framefile import day_numbers
from engine.pipeline.market import market
from engine.research.models import ModelError
from engine.schema import DATE, PORTFOLIO_COLUMNS, SCORE, SYMBOL

EPOCH = dt.date(1970, 1, 1)


class LookAhead(ModelError):
    """The scorer was fitted after the day to score: using it would look ahead."""

    def __init__(self, day: dt.date, fitted_at: dt.date | None) -> None:
        fix = (f"use a version fitted on or before {day} (--model-uri "
               "models:/<name>/<version>; `engine registry list` shows each version's fit date)")  # fmt: skip
        if fitted_at is None:
            super().__init__(f"the model's fit date is unknown (logged by an older engine), so "
                             f"it may know labels after {day}; {fix}")  # fmt: skip
        else:
            super().__init__(f"the model was fitted at the {fitted_at} rebalance, on labels "
                             f"known by then: scoring {day} with it would use the future; {fix}")  # fmt: skip


@dataclass(frozen=True)
class Prediction:
    """The holdings (``PORTFOLIO_COLUMNS``) built on ``day`` from ``scored`` symbols."""

    day: dt.date
    holdings: pl.DataFrame
    scored: int


def features_on(
    archive: Archive,
    spec: RunSpec,
    names: tuple[str, ...],
    as_of: dt.date,
    expressions: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Normalised features (and keys) of every scoreable symbol on the last trading day
    on or before ``as_of``, read from the run's model frame (that day's rows only);
    ``names`` and ``expressions`` as ``scored_set`` checks them."""
    features = scored_set(spec, names, expressions)
    file = frame_file(archive, spec.features, spec.paths, features)
    frame = model_frame(archive, spec.features, features) if file is None else None
    days = day_numbers(file.column(DATE) if frame is None else frame[DATE])
    limit = (as_of - EPOCH).days
    if not (days <= limit).any():
        first = EPOCH + dt.timedelta(int(days.min())) if days.size else "never"
        raise ModelError(f"no scoreable day on or before {as_of} (first: {first})")
    rows = np.flatnonzero(days == int(days[days <= limit].max()))
    return file.frame(rows) if frame is None else frame[rows]


def scored_set(
    spec: RunSpec, names: tuple[str, ...], expressions: Mapping[str, str] | None = None
) -> FeatureSet:
    """The feature set of the run (``spec.features.set``), which must give the scorer's
    inputs ``names``, in order, each computed as the model's run computed it: the set's
    parsed expression equal to the one the run logged (``expressions``, name -> expression
    as written; spacing is no part of it). A factor file edited since the run may not.
    ``expressions`` None or empty (a run that did not log them): names only.

    Raises
    ------
    FeatureError
        One line: the set gives other names, or another expression for one of them.
    """
    features = feature_set(spec.features.set)
    if features.names != tuple(names):
        raise FeatureError(f"feature set {spec.features.set!r} gives {len(features.names)} "
                           f"factors, not the model's {len(names)} inputs in its order: was "
                           "the file changed since the run?")  # fmt: skip
    for factor in features.factors if expressions else ():
        trained = expressions.get(factor.name)
        if trained is None or repr(_parsed(factor.name, trained)) != repr(factor.tree):
            raise FeatureError(f"feature set {spec.features.set!r}: factor {factor.name!r} "
                               f"is now {factor.expression!r}, the model was trained on "
                               f"{trained!r}: was the file changed since the run?")  # fmt: skip
    return features


def _parsed(name: str, expression: str) -> object:
    """The tree of a logged expression; None when it no longer parses."""
    try:
        return parse(name, expression)
    except FeatureError:
        return None


def predict(
    archive: Archive,
    spec: RunSpec,
    names: tuple[str, ...],
    score: Callable[[pl.DataFrame], np.ndarray],
    as_of: dt.date,
    fitted_at: dt.date | None,
    expressions: Mapping[str, str] | None = None,
) -> Prediction:
    """Score the features ``names`` of the last trading day on or before ``as_of`` with
    ``score`` (rows in, one score per row out) and build ``spec``'s portfolio from them.

    ``fitted_at`` is the date the scorer was fitted at: it was trained on labels known by
    then, so a day before it would be scored with knowledge of its future. That is refused
    (``LookAhead``), as is a scorer whose fit date is unknown (None). ``expressions``: the
    factors' expressions the scorer's run logged, checked against the set's now
    (``scored_set``).
    """
    day_frame = features_on(archive, spec, names, as_of, expressions)
    day = day_frame[DATE][0]
    if fitted_at is None or day < fitted_at:
        raise LookAhead(day, fitted_at)
    predictions = day_frame.select(DATE, SYMBOL).with_columns(pl.Series(SCORE, score(day_frame)))
    portfolio = ev.portfolio_spec(spec.portfolio, spec.model.name, predictions.height)
    panel = market(archive)
    history = ev.holdings_history(predictions, portfolio, panel, spec.backtest.execution_lag)
    holdings = latest_holdings(history, archive.companies).select(PORTFOLIO_COLUMNS)
    return Prediction(day, holdings, day_frame.height)
