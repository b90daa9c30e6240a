"""Small seeded panels for unit tests, already in the cache schema (snake_case)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from engine.data.archive.spec import INDEX_SCHEMA, PRICES_SCHEMA


def business_days(start: date, n: int) -> list[date]:
    days, d = [], start
    while len(days) < n:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def random_panel(
    n_symbols: int = 6, n_days: int = 320, seed: int = 0, late: int = 40
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(prices, index): random-walk prices sorted by (symbol, date); the last symbol lists
    ``late`` days after the others; the index misses a few days."""
    rng = np.random.default_rng(seed)
    days = business_days(date(2015, 1, 5), n_days)
    frames = []
    for s in range(n_symbols):
        first = late if s == n_symbols - 1 else 0
        n = n_days - first
        adj = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        close = adj * 1.05
        spread = np.abs(rng.normal(0, 0.01, n)) * close
        volume = rng.lognormal(13, 0.5, n).round()
        volume[10:40] = 1_000_000.0 if s == 0 else volume[10:40]  # constant stretch: std 0
        frames.append(
            pl.DataFrame(
                {
                    "date": days[first:],
                    "symbol": f"S{s:02d}",
                    "adj_close": adj,
                    "close": close,
                    "high": close + spread,
                    "low": close - spread,
                    "open": close,
                    "volume": volume,
                },
                schema=PRICES_SCHEMA,
            )
        )
    level = 1000 * np.exp(np.cumsum(rng.normal(0, 0.01, n_days)))
    index = pl.DataFrame({"date": days, "sp500": level}, schema=INDEX_SCHEMA)
    index = index.filter(~pl.int_range(pl.len()).is_in([100, 101, 250]))
    return pl.concat(frames), index
