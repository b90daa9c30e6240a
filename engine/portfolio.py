"""Scores -> portfolio weights at each rebalance date.

Long-only, fully invested. The first slice supports equal weights over the top-N
names; other schemes (inverse volatility, minimum variance, mean-variance with a
Ledoit-Wolf covariance) plug in through ``Weighting``.
"""

from __future__ import annotations

import polars as pl

from engine.schema import DATE, SCORE, SYMBOL, WEIGHT, Weighting


class PortfolioError(ValueError):
    """The portfolio cannot be built as configured."""


def top_n(predictions: pl.DataFrame, n: int) -> pl.DataFrame:
    """The ``n`` highest-scored symbols on each date (ties broken by symbol, for
    determinism). Rows with a null or NaN score are never selected."""
    scored = predictions.filter(pl.col(SCORE).is_not_null() & pl.col(SCORE).is_not_nan())
    return (
        scored.sort([DATE, SCORE, SYMBOL], descending=[False, True, False])
        .group_by(DATE, maintain_order=True)
        .head(n)
    )


def weights(predictions: pl.DataFrame, n: int, scheme: Weighting = Weighting.EQUAL) -> pl.DataFrame:
    """Target weights (date, symbol, weight, score) at each rebalance date; each date's
    weights sum to 1."""
    if scheme is not Weighting.EQUAL:
        raise PortfolioError(f"weighting {scheme.value!r} is not available yet; use 'equal'")
    held = top_n(predictions, n)
    return held.with_columns((1.0 / pl.len().over(DATE)).alias(WEIGHT)).select(
        DATE, SYMBOL, WEIGHT, SCORE
    )
