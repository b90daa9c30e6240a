"""load -> features -> train -> portfolio -> backtest: the run, as functions of the
previous stage's output and its own spec (``engine.config``).

* ``frame``: the model frame (normalised features and labels), memoised in the cache
  (``store``, ``framefile``); ``modeldata``: it as the arrays of the walk-forward.
* ``market``: the daily market panel (returns, sectors, benchmarks).
* ``evaluate``: one model's walk-forward scores, weights, backtest and metrics.
* ``compare``: every model on the same data, the comparison table and the
  multiple-testing adjustment.

Files are written by ``report`` and MLflow runs by ``tracking``; the only disk access
here is the archive's and the frame cache's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from engine.config import RunSpec
from engine.data.archive import Archive
from engine.features.sets import FeatureSet, builtin_set, feature_set
from engine.logs import StageTimer
from engine.pipeline import evaluate as ev
from engine.pipeline.factors import live_factors, model_attribution, run_factors
from engine.pipeline.frame import MIN_HISTORY_ROWS
from engine.pipeline.market import market
from engine.pipeline.modeldata import (
    MOMENTUM_FEATURE,
    ModelData,
    model_data,
    model_inputs,
    momentum_source,
)
from engine.research import signal
from engine.research.attribution import FactorFit
from engine.research.backtest import Market
from engine.research.models import ModelError, PeriodStats, period_stats
from engine.research.splits import Schedule
from engine.schema import DATE, NAME, SECTOR, SYMBOL, WEIGHT

log = logging.getLogger(__name__)

__all__ = [
    "MIN_HISTORY_ROWS",
    "Prepared",
    "RunResult",
    "StageTimer",
    "evaluate_model",
    "prepare",
    "run",
]


@dataclass(frozen=True)
class RunResult:
    """Everything a run of one model produced; ``report`` and ``tracking`` consume it.

    Attributes
    ----------
    predictions : date, symbol, label, score at every scored rebalance.
    ic : date, ic, n: the per-period out-of-sample rank IC.
    history : date, trade_date, symbol, weight, score at every rebalance.
    holdings : the latest rebalance: date, symbol, name, sector, weight, score.
    equity : daily date, gross, net, turnover, index, universe, equity curves, drawdown.
    attribution : sector, allocation, selection, total, w_port, w_bench (Brinson-Fachler
        against the equal-weight universe, gross).
    metrics : flat name -> value (NaN when not computable).
    model : the scorer in force at the last rebalance (None for baselines).
    fitted_at : ISO date of the rebalance at which ``model`` was fitted: it was trained only
        on labels known by then ("" for baselines).
    input_example : a few normalised feature rows (for the model signature).
    factors : date and the daily factor returns over the live period (the days of
        ``equity``; NaN where a factor has none).
    factor_fit : the regression of the daily net return minus the universe's on
        ``factors`` (loadings, annualised alpha, Newey-West t-stats, R^2).
    signal : the score's quality over horizons (``research.signal.signal_tables``); empty
        when the run writes no research report.
    feature_set : the factors of ``features``: names, expressions, descriptions.
    """

    spec: RunSpec
    fingerprint: str
    source: str
    features: tuple[str, ...]
    predictions: pl.DataFrame
    ic: pl.DataFrame
    history: pl.DataFrame
    holdings: pl.DataFrame
    equity: pl.DataFrame
    metrics: dict[str, float]
    model: Any
    input_example: pl.DataFrame
    timings: dict[str, float]
    attribution: pl.DataFrame = field(default_factory=pl.DataFrame)
    fitted_at: str = ""
    factors: pl.DataFrame = field(default_factory=pl.DataFrame)
    factor_fit: FactorFit | None = None
    signal: dict[str, pl.DataFrame] = field(default_factory=dict)
    feature_set: FeatureSet | None = None


@dataclass(frozen=True)
class Prepared:
    """The data every model of a run shares: the model frame's arrays, the daily market
    panel, the model signature's example rows and the daily factor returns (being
    computed meanwhile: ``factors`` waits for them)."""

    data: ModelData
    market: Market
    input_example: pl.DataFrame
    factor_returns: Future[pl.DataFrame]
    features: FeatureSet

    @property
    def factors(self) -> pl.DataFrame:
        """The daily factor returns (``pipeline.factors.run_factors``)."""
        return self.factor_returns.result()


def prepare(archive: Archive, spec: RunSpec, timer: StageTimer) -> Prepared:
    """Features (of ``spec.features.set``), labels and purge periods as arrays, and the
    daily market panel."""
    features, walk = feature_set(spec.features.set), spec.walk_forward
    with timer.stage("features"):
        columns = model_inputs(archive, spec.features, spec.paths, features)
        check_scoreable(len(columns.y))
        panel = market(archive)
        data = model_data(columns, spec.features, walk, panel.calendar, features.names)
        if not has_core_momentum(features):
            source = momentum_source(archive, spec.features, spec.paths, len(columns.y))
            data = dataclasses.replace(data, momentum=source)
    labelled = bool((data.available < len(data.rebalances)).any())
    check_trainable(labelled, data.plan, spec, len(panel.calendar))
    return prepared(data, panel, features, spec, timer)


def check_scoreable(rows: int) -> None:
    """Raise ``ModelError`` when the model frame has no row (no symbol has the history)."""
    if rows == 0:
        raise ModelError(f"no symbol has {MIN_HISTORY_ROWS} rows of history; nothing to score")


def check_trainable(labelled: bool, plan: Schedule, spec: RunSpec, days: int) -> None:
    """Raise ``ModelError`` when no row of the frame has a label known at a rebalance
    (``labelled`` false) or no rebalance of ``plan`` is active; ``days``: the calendar's."""
    if not labelled:
        raise ModelError(_no_label(spec.features.horizon, days))
    if not plan.active.any():
        raise ModelError(
            f"no rebalance date has a trained model: the archive needs more than "
            f"{spec.walk_forward.min_train_periods} {spec.walk_forward.rebalance.value} "
            "periods of labelled history"
        )


def prepared(
    data: ModelData, panel: Market, features: FeatureSet, spec: RunSpec, timer: StageTimer
) -> Prepared:
    """``Prepared`` of the model's arrays and the market panel: with the model signature's
    example rows (the last five rows of ``data``) and the run's factor returns."""
    names = list(features.names)  # the model signature: doubles
    example = pl.DataFrame(data.X[-5:].astype(np.float64), schema=names, orient="row")
    with timer.stage("factors"):
        factors = run_factors(data, panel, spec.backtest.execution_lag)
    return Prepared(data, panel, example, factors, features)


def has_core_momentum(features: FeatureSet) -> bool:
    """Whether ``features`` holds the momentum baseline's factor as ``core`` defines it."""
    core = {f.name: f.tree for f in builtin_set("core").factors}
    return any(f.name == MOMENTUM_FEATURE and f.tree == core[f.name] for f in features.factors)


def _no_label(horizon: int, days: int) -> str:
    """Why no row of the model frame has a label: the horizon against the history."""
    if horizon >= days:
        return (
            f"the label horizon ({horizon:,} trading days) is longer than the history "
            f"({days:,} trading days)"
        )
    return (
        f"the label horizon ({horizon:,} trading days) leaves no labelled row: the history has "
        f"{days:,} trading days and a row needs {MIN_HISTORY_ROWS - 1} before it (its "
        f"features) and {horizon:,} after it (its label)"
    )


def evaluate_model(
    archive: Archive,
    spec: RunSpec,
    prepared: Prepared,
    timer: StageTimer,
    sums: Callable[..., PeriodStats] = period_stats,
    *,
    report: bool = True,
) -> RunResult:
    """Walk ``spec.model`` forward on the prepared data, then weights, backtest, metrics;
    a linear model's per-period sums are made by ``sums`` (e.g. in Spark). The signal
    tables, which only the research report shows, are computed when ``report``."""
    data, panel, model = prepared.data, prepared.market, spec.model.name
    with timer.stage(f"walk-forward {model.value}"):
        result = ev.score(data, spec.model, spec.walk_forward.rebalance, panel.calendar, sums)
        predictions = ev.predictions_frame(data, result)
    if predictions.height == 0:
        raise ModelError(f"model {model.value} scored no rebalance date (too little history)")
    with timer.stage("portfolio"):
        universe = int(predictions.group_by(DATE).len()["len"].max())
        portfolio = ev.portfolio_spec(spec.portfolio, model, universe)
        lag = spec.backtest.execution_lag
        history = ev.holdings_history(predictions, portfolio, panel, lag)
        for warning in ev.portfolio_warnings(predictions, history, portfolio):
            log.warning("%s: %s", model.value, warning)
    with timer.stage("backtest"):
        equity, attribution = ev.run_backtest(history, panel, spec.backtest)
    with timer.stage("metrics"):
        overlap = ev.label_overlap(data, spec.features.horizon, panel.calendar)
        ic, metrics = ev.prediction_metrics(predictions, data.label, model, overlap)
        metrics |= ev.backtest_metrics(equity)
        metrics |= {f"model_{k}": v for k, v in result.info.items()}
    with timer.stage("attribution"):
        factors = live_factors(equity, prepared.factors)
        fit = model_attribution(equity, factors)
        metrics |= fit.metrics()
        tables = signal.signal_tables(predictions, panel) if report else {}
    return RunResult(
        spec=spec,
        fingerprint=archive.fingerprint,
        source=archive.source.value,
        features=data.features,
        predictions=predictions,
        ic=ic,
        history=history,
        holdings=latest_holdings(history, archive.companies),
        equity=equity,
        metrics=metrics,
        model=result.final,
        input_example=prepared.input_example,
        timings=dict(timer.seconds),
        fitted_at=str(data.rebalances[max(result.fits)]) if result.fits else "",
        attribution=attribution,
        factors=factors,
        factor_fit=fit,
        signal=tables,
        feature_set=prepared.features,
    )


def run(archive: Archive, spec: RunSpec, *, report: bool = True) -> RunResult:
    """The whole research run of ``spec.model`` on one archive (``report``: see
    ``evaluate_model``)."""
    timer = StageTimer()
    prepared = prepare(archive, spec, timer)
    return evaluate_model(archive, spec, prepared, timer, report=report)


def latest_holdings(history: pl.DataFrame, companies: pl.DataFrame) -> pl.DataFrame:
    """The last rebalance's holdings with company name and sector, largest weight first."""
    latest = history.filter(pl.col(DATE) == pl.col(DATE).max())
    return (
        latest.join(companies.select(SYMBOL, NAME, SECTOR), on=SYMBOL, how="left")
        .select(DATE, SYMBOL, NAME, SECTOR, WEIGHT, "score")
        .sort([WEIGHT, "score", SYMBOL], descending=[True, True, False])
    )
