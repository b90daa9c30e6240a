"""Factor portfolios: daily returns of long-short quintile portfolios built point in time.

A factor here is a long-short portfolio of the run's own universe: at each rebalance
date T, the names whose normalised feature value (as the model frame holds it, dated T)
is in the top quintile of that date's cross-section are held long, equally weighted,
and the bottom quintile short, equally weighted (gross 2, net 0; names without a value
are left out). ``direction = -1`` swaps the legs (low minus high). The portfolio trades
like the model's portfolio: at the close of T + ``execution_lag`` trading days, weights
drift with prices between trades (``research.backtest.backtest``), gross of costs.

The *market* factor is the equal-weight universe's daily return (``Market.universe``,
rebalanced daily), the very series subtracted from the portfolio in the attribution's
regressand: its loading is the portfolio's beta to the universe minus 1.

Named factors:

* ``momentum``: 12-1 momentum ``mom_12_1``, high minus low;
* ``low_vol``: 63-day volatility ``vol_63d``, low minus high;
* ``reversal``: 21-day return ``mom_21d``, low minus high (short-term reversal).

Any other feature of the model frame gives a factor with ``feature_factor``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from engine.research.backtest import Market, backtest
from engine.schema import DATE, SYMBOL

QUANTILES = 5  # long the top fifth, short the bottom fifth
MARKET = "market"


@dataclass(frozen=True)
class FactorSpec:
    """One long-short factor: its name, the feature sorted on, and which end is long.

    Attributes
    ----------
    name : the factor's column name in ``factor_returns``.
    feature : the model-frame feature sorted on at each rebalance.
    direction : +1 for high minus low, -1 for low minus high.
    label : how a reader calls it ("12-1 momentum, high minus low").
    """

    name: str
    feature: str
    direction: int
    label: str


STYLE_FACTORS = (
    FactorSpec("momentum", "mom_12_1", +1, "12-1 momentum (mom_12_1), high minus low"),
    FactorSpec("low_vol", "vol_63d", -1, "low volatility (vol_63d), low minus high"),
    FactorSpec("reversal", "mom_21d", -1, "short-term reversal (mom_21d), low minus high"),
)
MARKET_LABEL = "market: the equal-weight universe's return (loading = beta to it - 1)"


def feature_factor(feature: str) -> FactorSpec:
    """The top-minus-bottom quintile factor of any model-frame feature."""
    return FactorSpec(feature, feature, +1, f"{feature}, top minus bottom quintile")


def quintile_weights(features: pl.DataFrame, spec: FactorSpec) -> pl.DataFrame:
    """date, symbol, weight of one factor at each rebalance date.

    Within each date the feature's non-null values are ranked (average ranks); a name
    whose rank percentile (rank - 1/2) / n is >= 1 - 1/QUANTILES is in the top leg,
    < 1/QUANTILES in the bottom leg. Each leg is equally weighted to +1 (long) or -1.
    """
    valid = pl.col(spec.feature).is_not_null() & pl.col(spec.feature).is_not_nan()
    pct = (pl.col(spec.feature).rank("average") - 0.5) / pl.len()
    side = (
        pl.when(pl.col("pct") >= 1 - 1 / QUANTILES)
        .then(1)
        .when(pl.col("pct") < 1 / QUANTILES)
        .then(-1)
        .otherwise(0)
        * spec.direction
    )
    legs = (
        features.filter(valid)
        .with_columns(pct.over(DATE).alias("pct"))
        .with_columns(side.alias("side"))
        .filter(pl.col("side") != 0)
    )
    weight = pl.col("side") / pl.len().over(DATE, "side")
    return legs.select(DATE, SYMBOL, weight.cast(pl.Float64).alias("weight")).sort(DATE, SYMBOL)


def factor_target_matrix(
    weights: pl.DataFrame, rebalances: np.ndarray, symbols: np.ndarray
) -> np.ndarray:
    """(rebalances x symbols) targets from date, symbol, weight rows (0 elsewhere)."""
    targets = np.zeros((len(rebalances), len(symbols)))
    row = np.searchsorted(rebalances, weights[DATE].to_numpy())
    col = weights[SYMBOL].replace_strict(symbols.tolist(), np.arange(len(symbols))).to_numpy()
    targets[row, col] = weights["weight"].to_numpy()
    return targets


def factor_returns(
    features: pl.DataFrame,
    market: Market,
    execution_lag: int,
    specs: Sequence[FactorSpec] = STYLE_FACTORS,
) -> pl.DataFrame:
    """Daily returns of the market and each factor of ``specs`` over the calendar.

    Parameters
    ----------
    features : date, symbol and the specs' feature columns at each rebalance date (the
        normalised values the model sees); its dates are the rebalance schedule.
    market : the run's daily panel; symbols absent from it are ignored.
    execution_lag : trading days from the signal (close of T) to the trade.

    Returns
    -------
    date, market, then one column per spec: daily simple returns, NaN before a factor's
    first holding day.
    """
    features = features.filter(pl.col(SYMBOL).is_in(market.symbols.tolist()))
    rebalances = np.sort(features[DATE].unique().to_numpy()).astype("datetime64[D]")
    calendar = market.calendar.astype("datetime64[D]")
    trade_days = np.searchsorted(calendar, rebalances) + execution_lag
    columns = {DATE: calendar, MARKET: market.universe}
    for spec in specs:
        targets = factor_target_matrix(quintile_weights(features, spec), rebalances, market.symbols)
        result = backtest(market.returns, trade_days, targets, cost_bps=0.0)
        daily = result.gross.copy()
        daily[: result.start + 1] = np.nan
        columns[spec.name] = daily
    return pl.DataFrame(columns).with_columns(pl.col(DATE).cast(pl.Date))
