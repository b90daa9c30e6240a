"""The same features and labels in plain pandas: the speed reference.

Written the way tutorial systems do it: ``groupby("symbol")`` then ``rolling(w)`` per
column, ``groupby().apply`` where two columns meet (rolling covariance), and a per-date
``groupby("date").rank()`` for the cross-sectional normalisation. The definitions are those
of ``engine/features/__init__.py`` (tests/test_sqlviews.py checks that this module agrees with it);
only the speed is under test here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

HORIZONS = (5, 21, 63)


def feature_panel(prices: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """date, symbol, adj_close, history_rows, the 18 default features, the labels and
    their end dates; sorted by (symbol, date)."""
    df = prices.sort_values(["symbol", "date"], ignore_index=True)
    df = df.merge(index[["date", "sp500"]], on="date", how="left")
    by = df.groupby("symbol", sort=False)
    df["history_rows"] = by.cumcount() + 1
    df["ret_1d"] = np.log(df["adj_close"] / by["adj_close"].shift(1))
    df["range_hl"] = (df["high"] - df["low"]) / df["close"]
    # the index's log return between the symbol's consecutive rows (null at an index gap)
    df["mkt_ret_1d"] = np.log(df["sp500"] / by["sp500"].shift(1))

    def rolling(column: str, window: int, how: str) -> pd.Series:
        rolled = getattr(by[column].rolling(window), how)()
        return rolled.reset_index(level=0, drop=True)

    out = df[["date", "symbol", "adj_close", "history_rows", "ret_1d"]].copy()
    for w in (5, 21, 63):
        out[f"vol_{w}d"] = rolling("ret_1d", w, "std")
    for w in (21, 63, 126, 252):
        out[f"mom_{w}d"] = df["adj_close"] / by["adj_close"].shift(w) - 1
    out["mom_12_1"] = by["adj_close"].shift(21) / by["adj_close"].shift(252) - 1
    out["px_sma20"] = df["adj_close"] / rolling("adj_close", 20, "mean")
    out["px_sma50"] = df["adj_close"] / rolling("adj_close", 50, "mean")
    out["sma50_sma200"] = rolling("adj_close", 50, "mean") / rolling("adj_close", 200, "mean")
    out["px_high252"] = df["adj_close"] / rolling("adj_close", 252, "max")
    out["range_hl"] = df["range_hl"]
    out["range_hl_21d"] = rolling("range_hl", 21, "mean")
    std = rolling("volume", 21, "std")
    z = (df["volume"] - rolling("volume", 21, "mean")) / std
    out["volume_z_21d"] = z.where(std > 0)
    cov = by[["ret_1d", "mkt_ret_1d"]].apply(_rolling_cov).reset_index(level=0, drop=True)
    var_m = rolling("mkt_ret_1d", 63, "var")
    var_r = rolling("ret_1d", 63, "var")
    ok = var_m > 0
    out["beta_63d"] = (cov / var_m).where(ok)
    out["idio_vol_63d"] = np.sqrt((var_r - cov**2 / var_m).clip(lower=0)).where(ok)
    for h in HORIZONS:
        out[f"fwd_ret_{h}d"] = by["adj_close"].shift(-h) / df["adj_close"] - 1
    for h in HORIZONS:
        out[f"label_end_{h}d"] = by["date"].shift(-h)
    return out


def _rolling_cov(group: pd.DataFrame, window: int = 63) -> pd.Series:
    return group["ret_1d"].rolling(window).cov(group["mkt_ret_1d"])


def rank_normalise(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Per date: average rank mapped to [-0.5, 0.5] ((rank - 1) / (n - 1) - 0.5; 0 when one
    value), nulls to 0 -- ``engine.research.crosssection.normalise`` with the rank method."""
    by = frame.groupby("date", sort=False)[list(columns)]
    ranks = by.rank(method="average")
    counts = by.transform("count")
    scaled = (ranks - 1) / (counts - 1) - 0.5
    scaled = scaled.where(counts > 1, 0.0).where(frame[list(columns)].notna())
    return frame.assign(**{c: scaled[c].fillna(0.0) for c in columns})
