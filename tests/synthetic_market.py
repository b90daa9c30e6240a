"""A seeded synthetic ``Market`` and rebalance-date features, for the research report's
pure functions (factors, attribution, tear-sheet tables)."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from engine.research.backtest import Market, equal_weight_universe
from engine.research.splits import rebalance_dates
from engine.schema import DATE, SYMBOL, Rebalance
from tests.panels import business_days


def synthetic_market(n_symbols: int = 60, n_days: int = 1500, seed: int = 0) -> Market:
    """Mean-zero iid daily returns (sd 1.5 %) with a common market factor; no NaN but
    the first day."""
    rng = np.random.default_rng(seed)
    calendar = np.array(business_days(date(2012, 1, 2), n_days), dtype="datetime64[D]")
    common = rng.normal(0, 0.008, (n_days, 1))
    returns = common + rng.normal(0, 0.015, (n_days, n_symbols))
    returns[0] = np.nan
    index = common[:, 0] + rng.normal(0, 0.001, n_days)
    index[0] = np.nan
    return Market(
        calendar=calendar,
        symbols=np.array([f"S{i:03d}" for i in range(n_symbols)], dtype=object),
        returns=returns,
        sector_code=np.arange(n_symbols) % 3,
        sector_names=("Alpha", "Beta", "Gamma"),
        index=index,
        universe=equal_weight_universe(returns),
    )


def rebalance_features(
    market: Market, names: tuple[str, ...] = ("mom_12_1", "vol_63d", "mom_21d"), seed: int = 1
) -> pl.DataFrame:
    """date, symbol and independent uniform [-0.5, 0.5] features at each month end."""
    rng = np.random.default_rng(seed)
    dates = rebalance_dates(market.calendar, Rebalance.MONTHLY)
    n = len(market.symbols)
    frame = pl.DataFrame(
        {
            DATE: np.repeat(dates, n),
            SYMBOL: np.tile(market.symbols, len(dates)).tolist(),
            **{f: rng.uniform(-0.5, 0.5, len(dates) * n) for f in names},
        }
    )
    return frame.with_columns(pl.col(DATE).cast(pl.Date))
