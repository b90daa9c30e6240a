"""load -> features -> train -> portfolio -> backtest: the run, as functions of the
previous stage's output and the settings. No I/O here beyond what ``archive`` does;
``report`` writes files and ``tracking`` logs to MLflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from engine import backtest as bt
from engine import metrics as mt
from engine.archive import Archive
from engine.config import Settings
from engine.crosssection import normalise
from engine.features import DEFAULT_FEATURES, HISTORY, feature_panel, label_name
from engine.models import ModelError, WalkForwardResult, walk_forward_linear
from engine.portfolio import weights as portfolio_weights
from engine.schema import (
    ADJ_CLOSE,
    DATE,
    INDEX_LEVEL,
    NAME,
    SCORE,
    SECTOR,
    SYMBOL,
    WEIGHT,
    ModelName,
)
from engine.splits import available_period, prediction_period, rebalance_dates, schedule

log = logging.getLogger(__name__)

MIN_HISTORY_ROWS = 253  # a symbol is scored once it has a full year of returns (252 + 1 rows)


@dataclass
class StageTimer:
    """Wall time of each stage, in seconds, in the order the stages ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("%s ...", name)
        yield
        self.seconds[name] = time.perf_counter() - start
        log.info("%s done in %.2f s", name, self.seconds[name])


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced; ``report`` and ``tracking`` consume it."""

    settings: Settings
    fingerprint: str
    source: str
    features: tuple[str, ...]
    predictions: pl.DataFrame  # date, symbol, score, label
    ic: pl.DataFrame  # date, ic, n
    history: pl.DataFrame  # date, symbol, weight, score at every rebalance
    holdings: pl.DataFrame  # latest: symbol, name, sector, weight, score
    equity: pl.DataFrame  # daily: date, gross, net, turnover, benchmarks, equity curves
    metrics: dict[str, float]
    model: Any  # the scorer in force at the last rebalance (None for baselines)
    input_example: pl.DataFrame  # a few normalised feature rows (model signature)
    timings: dict[str, float]


def model_frame(archive: Archive, settings: Settings, features: tuple[str, ...]) -> pl.DataFrame:
    """Normalised features, the label and its end date for every scoreable row, sorted by
    (date, symbol). Rows of symbols with less than MIN_HISTORY_ROWS of history are dropped."""
    label = label_name(settings.horizon)
    # Sorting by date before the per-date ranks halves their cost (contiguous groups).
    panel = (
        feature_panel(archive.prices, archive.index, features, horizons=(settings.horizon,))
        .filter(pl.col(HISTORY) >= MIN_HISTORY_ROWS)
        .join(archive.companies.lazy().select(SYMBOL, SECTOR), on=SYMBOL, how="left")
        .select(DATE, SYMBOL, SECTOR, *features, label, f"label_end_{settings.horizon}d")
        .sort(DATE, SYMBOL)
    )
    normalised = normalise(panel, features, settings.normalisation, settings.sector_neutral)
    return normalised.drop(SECTOR).collect()


def walk_forward(
    frame: pl.DataFrame, features: tuple[str, ...], settings: Settings, rebalances: np.ndarray
) -> WalkForwardResult:
    """Scores for the rows dated at rebalance dates, from the configured model."""
    dates = frame[DATE].to_numpy()
    predict_at = prediction_period(dates, rebalances)
    if settings.model is ModelName.MOMENTUM:
        scores = np.where(predict_at >= 0, frame["mom_12_1"].to_numpy(), np.nan)
        return WalkForwardResult(scores=scores, fits={})
    if settings.model is ModelName.EQUAL_WEIGHT:
        return WalkForwardResult(scores=np.where(predict_at >= 0, 0.0, np.nan), fits={})
    if settings.model is not ModelName.RIDGE:
        raise ModelError(f"model {settings.model.value!r} is not available yet; use ridge")
    label = label_name(settings.horizon)
    y = frame[label].fill_null(np.nan).to_numpy()
    available = available_period(frame[f"label_end_{settings.horizon}d"].to_numpy(), rebalances)
    available[np.isnan(y)] = len(rebalances)
    with_data = available[available < len(rebalances)]
    if with_data.size == 0:
        raise ModelError("no labelled rows: the archive is too short for the label horizon")
    plan = schedule(
        rebalances,
        settings.train_window,
        settings.min_train_periods,
        settings.rolling_periods,
        first_available=int(with_data.min()),
    )
    X = frame.select(features).to_numpy().astype(np.float64, copy=False)
    return walk_forward_linear(X, np.nan_to_num(y), available, predict_at, plan, settings.alpha)


def price_matrix(prices: pl.DataFrame, calendar: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """(days x symbols) Adj Close, NaN where a symbol has no row."""
    out = np.full((len(calendar), len(symbols)), np.nan)
    day = np.searchsorted(calendar, prices[DATE].to_numpy())
    sym = np.searchsorted(symbols, prices[SYMBOL].to_numpy())
    out[day, sym] = prices[ADJ_CLOSE].to_numpy()
    return out


def run(archive: Archive, settings: Settings) -> RunResult:
    """The whole research run on one archive."""
    timer = StageTimer()
    features = DEFAULT_FEATURES
    label = label_name(settings.horizon)
    with timer.stage("features"):
        frame = model_frame(archive, settings, features)
        prices = archive.prices.select(DATE, SYMBOL, ADJ_CLOSE).collect()
        calendar = prices[DATE].unique().sort().to_numpy()
        rebalances = rebalance_dates(calendar, settings.rebalance)
    if frame.height == 0:
        raise ModelError(f"no symbol has {MIN_HISTORY_ROWS} rows of history; nothing to score")
    with timer.stage("walk-forward"):
        result = walk_forward(frame, features, settings, rebalances)
        scored = ~np.isnan(result.scores)
        predictions = (
            frame.filter(pl.Series(scored))
            .select(DATE, SYMBOL, label)
            .with_columns(pl.Series(SCORE, result.scores[scored]))
        )
    if predictions.height == 0:
        raise ModelError(
            f"no rebalance date has a trained model: the archive needs more than "
            f"{settings.min_train_periods} {settings.rebalance.value} periods of labelled history"
        )
    with timer.stage("portfolio"):
        n_names = (
            predictions.height if settings.model is ModelName.EQUAL_WEIGHT else settings.top_stocks
        )
        history = portfolio_weights(predictions, n_names, settings.weighting)
    with timer.stage("backtest"):
        equity, bt_metrics = _backtest(history, prices, calendar, archive.index, settings)
    with timer.stage("metrics"):
        ic = mt.rank_ic_series(predictions, label)
        metrics = {
            **mt.ic_summary(ic["ic"].to_numpy()),
            "r2_oos": mt.r2_oos(
                predictions[label].fill_null(np.nan).to_numpy(), predictions[SCORE].to_numpy()
            )
            if result.fits
            else float("nan"),
            **bt_metrics,
        }
    holdings = _latest_holdings(history, archive.companies)
    return RunResult(
        settings=settings,
        fingerprint=archive.fingerprint,
        source=archive.source.value,
        features=features,
        predictions=predictions,
        ic=ic,
        history=history,
        holdings=holdings,
        equity=equity,
        metrics=metrics,
        model=result.final,
        input_example=frame.select(features).tail(5),
        timings=timer.seconds,
    )


def _backtest(
    history: pl.DataFrame,
    prices: pl.DataFrame,
    calendar: np.ndarray,
    index: pl.LazyFrame,
    settings: Settings,
) -> tuple[pl.DataFrame, dict[str, float]]:
    symbols = prices[SYMBOL].unique().sort().to_numpy()
    returns = bt.simple_returns(price_matrix(prices, calendar, symbols))
    rebal = history[DATE].unique().sort().to_numpy()
    targets = np.zeros((len(rebal), len(symbols)))
    row = np.searchsorted(rebal, history[DATE].to_numpy())
    targets[row, np.searchsorted(symbols, history[SYMBOL].to_numpy())] = history[WEIGHT].to_numpy()
    trade_days = np.searchsorted(calendar, rebal) + settings.execution_lag
    result = bt.backtest(returns, trade_days, targets, settings.cost_bps)
    level = (
        pl.DataFrame({DATE: calendar})
        .join(index.collect(), on=DATE, how="left")[INDEX_LEVEL]
        .fill_null(np.nan)
        .to_numpy()
    )
    index_ret = bt.simple_returns(level[:, None])[:, 0]
    universe = bt.equal_weight_universe(returns)
    live = slice(result.start + 1, len(calendar))
    equity = pl.DataFrame(
        {
            DATE: calendar[live],
            "gross": result.gross[live],
            "net": result.net[live],
            "turnover": result.turnover[live],
            "index": index_ret[live],
            "universe": universe[live],
        }
    ).with_columns(
        ((1 + pl.col(c).fill_nan(0)).cum_prod()).alias(f"equity_{c}")
        for c in ("gross", "net", "index", "universe")
    )
    return equity, _backtest_metrics(equity)


def _backtest_metrics(equity: pl.DataFrame) -> dict[str, float]:
    """Portfolio metrics over the live period; index comparisons on the days the index
    exists (the Kaggle index file can start later than the prices)."""
    net, gross = equity["net"].to_numpy(), equity["gross"].to_numpy()
    index, universe = equity["index"].to_numpy(), equity["universe"].to_numpy()
    common = ~np.isnan(index)
    out = {
        **mt.portfolio_summary(net, "net_"),
        **mt.portfolio_summary(gross, "gross_"),
        **mt.portfolio_summary(universe, "universe_"),
        "index_cagr": mt.cagr(index[common]),
        "index_total_return": mt.total_return(index[common]),
        "net_cagr_vs_index_days": mt.cagr(net[common]),
        "turnover_annual": float(equity["turnover"].sum() / max(len(net), 1) * mt.TRADING_DAYS),
        "backtest_days": float(len(net)),
        "index_coverage": float(common.mean()) if len(common) else 0.0,
    }
    out["excess_cagr_vs_index"] = out["net_cagr_vs_index_days"] - out["index_cagr"]
    out["excess_cagr_vs_universe"] = out["net_cagr"] - out["universe_cagr"]
    return out


def _latest_holdings(history: pl.DataFrame, companies: pl.DataFrame) -> pl.DataFrame:
    latest = history.filter(pl.col(DATE) == pl.col(DATE).max())
    return (
        latest.join(companies.select(SYMBOL, NAME, SECTOR), on=SYMBOL, how="left")
        .select(DATE, SYMBOL, NAME, SECTOR, WEIGHT, SCORE)
        .sort(WEIGHT, SCORE, descending=True)
    )
