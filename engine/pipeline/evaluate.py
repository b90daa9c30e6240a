"""Scores -> weights -> daily backtest -> metrics, for one model on shared data."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import polars as pl

from engine.config import BacktestSpec, ModelSpec, PortfolioSpec
from engine.pipeline.modeldata import ModelData
from engine.research import backtest as bt
from engine.research import metrics as mt
from engine.research.models import (
    DEFAULT_ALPHA,
    LINEAR_MODELS,
    TREE_MODELS,
    InnerSplit,
    LinearSpec,
    PeriodStats,
    RefitPlan,
    WalkForwardResult,
    period_stats,
    tree_factory,
    walk_forward_linear,
    walk_forward_refit,
)
from engine.research.portfolio import scheme_weights
from engine.schema import DATE, SCORE, SYMBOL, WEIGHT, ModelName, Rebalance, Weighting

PERIODS_PER_YEAR = {Rebalance.WEEKLY: 52, Rebalance.MONTHLY: 12, Rebalance.QUARTERLY: 4}
FORECASTING_MODELS = LINEAR_MODELS | TREE_MODELS  # scores in label units: R^2 is meaningful
CASH_TOLERANCE = 1e-9  # weights summing to within this of 1 are fully invested


def purge_gap_periods(data: ModelData, horizon: int, calendar: np.ndarray) -> int:
    """Rebalance periods that certainly span ``horizon`` trading days (for inner validation)."""
    lengths = np.diff(np.searchsorted(calendar, data.rebalances))
    shortest = int(lengths[:-1].min()) if lengths.size > 1 else horizon
    return math.ceil(horizon / max(shortest, 1))


def score(
    data: ModelData,
    spec: ModelSpec,
    rebalance: Rebalance,
    calendar: np.ndarray,
    sums: Callable[..., PeriodStats] = period_stats,
) -> WalkForwardResult:
    """Out-of-sample scores of ``model`` at every active rebalance (purged walk-forward);
    a linear model's per-period sums are made by ``sums`` (see ``walk_forward_linear``).

    Baselines are scored at the same active rebalances as the models, so that every
    model of a comparison is backtested over the same dates.
    """
    model = spec.name
    live = data.scored[data.plan.active[data.predict_at[data.scored]]]
    if model in (ModelName.MOMENTUM, ModelName.EQUAL_WEIGHT):
        scores = np.full(len(data.y), np.nan)
        if model is ModelName.MOMENTUM:  # read on the live rows only
            scores[live] = data.momentum_scores(live)
        else:
            scores[live] = 0.0
        return WalkForwardResult(scores, {})
    y = np.nan_to_num(data.y)
    if model in LINEAR_MODELS:
        tuning = None
        if spec.tune:
            gap = purge_gap_periods(data, data.horizon, calendar)
            tuning = InnerSplit(spec.validation_periods, gap)
        alpha = DEFAULT_ALPHA[model] if spec.alpha is None else spec.alpha
        linear = LinearSpec(model, alpha, spec.l1_ratio, tuning)
        return walk_forward_linear(
            data.X, y, data.available, data.predict_at, data.plan, linear, sums
        )
    if model in TREE_MODELS:
        every = spec.refit_every or PERIODS_PER_YEAR[rebalance]
        plan = RefitPlan(every, spec.train_dates, spec.seed)
        make = tree_factory(model, spec.seed, spec.n_jobs)
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        with threadpool_limits(limits=spec.n_jobs):
            return walk_forward_refit(
                data.X, y, data.available, data.predict_at, data.date_id, data.plan, make, plan
            )
    raise ValueError(f"unknown model {model!r}")


def predictions_frame(data: ModelData, result: WalkForwardResult) -> pl.DataFrame:
    """date, symbol, label, score of every scored row."""
    scores = result.scores[data.scored]  # only rows dated on a rebalance are ever scored
    kept = ~np.isnan(scores)
    return data.keys.filter(pl.Series(kept)).with_columns(pl.Series(SCORE, scores[kept]))


def portfolio_spec(spec: PortfolioSpec, model: ModelName, universe: int) -> PortfolioSpec:
    """The top-N spec; the equal-weight baseline holds the whole universe equally."""
    if model is ModelName.EQUAL_WEIGHT:
        return PortfolioSpec(top_stocks=universe, weighting=Weighting.EQUAL, max_weight=1.0)
    return spec


def holdings_history(
    predictions: pl.DataFrame, spec: PortfolioSpec, market: bt.Market, lag: int
) -> pl.DataFrame:
    """date, trade_date, symbol, weight, score at every rebalance."""
    history = scheme_weights(
        predictions, spec, market.calendar, market.symbols, market.returns, market.sector_code
    )
    days = np.searchsorted(market.calendar, history[DATE].to_numpy()) + lag
    future = days >= len(market.calendar)  # the last signals trade after the data ends
    trade = market.calendar[np.where(future, 0, days)].astype("datetime64[D]")
    trade[future] = np.datetime64("NaT")
    return history.with_columns(pl.Series("trade_date", trade).cast(pl.Date)).select(
        DATE, "trade_date", SYMBOL, WEIGHT, SCORE
    )


def portfolio_warnings(
    predictions: pl.DataFrame, history: pl.DataFrame, spec: PortfolioSpec
) -> list[str]:
    """One line for each way the portfolio falls short of ``spec``: fewer names scored
    than it should hold, and weights summing below 1 (cash, left by a sector cap)."""
    out = []
    rebalances = history[DATE].n_unique()
    names = predictions.group_by(DATE).len()["len"]
    short = int((names < spec.top_stocks).sum())
    if short:
        out.append(
            f"the universe is smaller than TOP_STOCKS ({spec.top_stocks}): {short} of "
            f"{names.len()} rebalances score fewer names (as few as {names.min()}), and the "
            "portfolio holds all of them"
        )
    cash = 1.0 - history.group_by(DATE).agg(pl.col(WEIGHT).sum())[WEIGHT]
    left = cash.filter(cash > CASH_TOLERANCE)
    if left.len():
        cause = f"the sector cap ({spec.sector_cap:g})" if spec.sector_cap else "the caps"
        out.append(
            f"{cause} left cash on {left.len()} of {rebalances} rebalances: up to "
            f"{left.max():.0%} of the portfolio (mean {left.mean():.0%}) earns nothing"
        )
    return out


def target_matrix(history: pl.DataFrame, market: bt.Market) -> tuple[np.ndarray, np.ndarray]:
    """(rebalance dates, targets[rebalance, symbol]) from the holdings history."""
    rebal = history[DATE].unique().sort().to_numpy()
    targets = np.zeros((len(rebal), len(market.symbols)))
    row = np.searchsorted(rebal, history[DATE].to_numpy())
    col = np.searchsorted(market.symbols, history[SYMBOL].to_numpy())
    targets[row, col] = history[WEIGHT].to_numpy()
    return rebal, targets


def run_backtest(
    history: pl.DataFrame, market: bt.Market, spec: BacktestSpec
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The daily equity frame over the live period and the sector attribution."""
    rebal, targets = target_matrix(history, market)
    trade_days = np.searchsorted(market.calendar, rebal) + spec.execution_lag
    result = bt.backtest(market.returns, trade_days, targets, spec.cost_bps)
    live = slice(result.start + 1, len(market.calendar))
    equity = pl.DataFrame(
        {
            DATE: market.calendar[live],
            "gross": result.gross[live],
            "net": result.net[live],
            "turnover": result.turnover[live],
            "index": market.index[live],
            "universe": market.universe[live],
        }
    ).with_columns(
        *(((1 + pl.col(c).fill_nan(0)).cum_prod()).alias(f"equity_{c}") for c in ("gross", "net", "index", "universe")),
        pl.Series("drawdown_net", mt.drawdown(result.net[live])),
    )  # fmt: skip
    kept = trade_days < len(market.calendar)
    period = bt.holding_period_returns(market.sums, trade_days[kept])
    attribution = mt.sector_attribution(
        targets[kept], period, market.sector_code, market.sector_names
    )
    return equity, attribution


def backtest_metrics(equity: pl.DataFrame) -> dict[str, float]:
    """Portfolio metrics over the live period. Index comparisons use the days the index
    exists (the Kaggle index file can start later than the prices); the equal-weight
    universe shares the portfolio's Adj Close basis and every day."""
    net, gross = equity["net"].to_numpy(), equity["gross"].to_numpy()
    index, universe = equity["index"].to_numpy(), equity["universe"].to_numpy()
    common = ~np.isnan(index)
    out = {
        **mt.portfolio_summary(net, "net_"),
        **mt.portfolio_summary(gross, "gross_", full=False),
        **mt.portfolio_summary(universe, "universe_", full=False),
        **mt.portfolio_summary(index[common], "index_", full=False),
        **mt.relative(net, index, "_vs_index"),
        **mt.relative(net, universe, "_vs_universe"),
        "net_cagr_vs_index_days": mt.cagr(net[common]),
        "turnover_annual": float(equity["turnover"].sum() / max(len(net), 1) * mt.TRADING_DAYS),
        "backtest_days": float(len(net)),
        "index_coverage": float(common.mean()) if len(common) else 0.0,
    }
    out["cost_drag_annual"] = out["gross_cagr"] - out["net_cagr"]
    return out


def label_overlap(data: ModelData, horizon: int, calendar: np.ndarray) -> float:
    """Label horizon / median trading days between rebalances (>= 1 means overlap)."""
    lengths = np.diff(np.searchsorted(calendar, data.rebalances))
    return horizon / float(np.median(lengths)) if lengths.size else 1.0


def prediction_metrics(
    predictions: pl.DataFrame, label: str, model: ModelName, overlap: float = 1.0
) -> tuple[pl.DataFrame, dict[str, float]]:
    """The per-period IC series and the prediction metrics."""
    ic = mt.rank_ic_by_label(predictions, (label,))[label]
    out = {
        **mt.ic_summary(ic["ic"].to_numpy(), overlap),
        "hit_rate": mt.hit_rate(predictions, label),
    }
    if model is ModelName.EQUAL_WEIGHT:  # one score for all: no ranking to judge
        out["hit_rate"] = math.nan
    forecasting = model in FORECASTING_MODELS
    labels = predictions[label].fill_null(np.nan).to_numpy()
    out["r2_oos"] = mt.r2_oos(labels, predictions[SCORE].to_numpy()) if forecasting else math.nan
    return ic, out
