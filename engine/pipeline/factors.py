"""The run's factor returns and each model's factor attribution against them.

The factors (``research.factors``) are built once per run from the model frame's
rebalance-date features, on the run's schedule and execution lag, and shared by every
model of it; each model's daily excess return over the equal-weight universe is then
regressed on them (``research.attribution``) over its live period.
"""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np
import polars as pl

from engine.pipeline.framefile import BATCH_ROWS
from engine.pipeline.modeldata import ModelData
from engine.pipeline.threads import started
from engine.research.attribution import FactorFit, factor_attribution
from engine.research.backtest import Market
from engine.research.factors import STYLE_FACTORS, FactorSpec, factor_returns
from engine.schema import DATE, SYMBOL


def rebalance_features(data: ModelData, names: tuple[str, ...]) -> pl.DataFrame:
    """date, symbol and the normalised ``names`` features of every row dated on a
    rebalance (the model frame's values, as the models see them)."""
    index = [data.features.index(n) for n in names]
    # read by record batch of the frame file (the rows are in date order): one batch's
    # pages are mapped at a time, not the whole file's
    cuts = np.flatnonzero(np.diff(data.scored // BATCH_ROWS)) + 1
    parts = np.split(data.scored, cuts)
    values = np.vstack([np.asarray(data.X[rows][:, index], dtype=np.float64) for rows in parts])
    return data.keys.select(DATE, SYMBOL).with_columns(
        pl.Series(n, values[:, i]) for i, n in enumerate(names)
    )


def run_factors(
    data: ModelData,
    market: Market,
    execution_lag: int,
    specs: tuple[FactorSpec, ...] = STYLE_FACTORS,
) -> Future[pl.DataFrame]:
    """Daily factor returns of a run (shared by every model of it): ``factor_returns`` of
    the rebalance-date features on the run's schedule and lag; date + one column each.
    A factor whose feature the run does not compute is left out.

    The features are read from ``data`` here; the returns are computed on a thread of
    their own (``threads.started``) while the caller goes on.
    """
    specs = tuple(s for s in specs if s.feature in data.features)
    features = rebalance_features(data, tuple(dict.fromkeys(s.feature for s in specs)))
    return started(factor_returns, features, market, execution_lag, specs)


def live_factors(equity: pl.DataFrame, factors: pl.DataFrame) -> pl.DataFrame:
    """The factor returns on the days of ``equity`` (a model's live period): date + one
    Float64 column per factor, NaN where a factor has no return."""
    return equity.select(DATE).join(factors, on=DATE, how="left").fill_null(np.nan)


def model_attribution(equity: pl.DataFrame, live: pl.DataFrame) -> FactorFit:
    """The factor regression of the daily net return minus the universe's (``equity``)
    on the ``live_factors``."""
    excess = (equity["net"] - equity["universe"]).to_numpy()
    return factor_attribution(excess, live.drop(DATE))
