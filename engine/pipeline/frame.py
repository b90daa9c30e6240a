"""The model boundary: normalised features and labels as numpy arrays, and the daily market.

``model_frame`` is the only expensive step of a run (point-in-time features, then a
per-date rank of every feature). Its result depends only on the dataset fingerprint,
the feature settings and the source code that computes it, so it is memoised in the
Parquet cache under a key made of exactly those (``frame_key``); a change to any of
them, including an edit of ``features.py``, gives a new key and a recomputation.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from engine import backtest as bt
from engine import cache, crosssection, features
from engine.archive import Archive
from engine.config import Settings
from engine.crosssection import normalise
from engine.features import HISTORY, feature_panel, label_name
from engine.schema import ADJ_CLOSE, DATE, INDEX_LEVEL, SECTOR, SYMBOL
from engine.splits import Schedule, available_period, prediction_period, rebalance_dates, schedule

log = logging.getLogger(__name__)

MIN_HISTORY_ROWS = 253  # a symbol is scored once it has a full year of returns (252 + 1 rows)
FRAME_TABLE = "model_frame"
UNKNOWN_SECTOR = "Unknown"


def label_end_name(horizon: int) -> str:
    return f"label_end_{horizon}d"


def model_frame(archive: Archive, settings: Settings, names: tuple[str, ...]) -> pl.DataFrame:
    """Normalised features (float32), the label and its end date for every scoreable row,
    sorted by (date, symbol). Rows of symbols with less than MIN_HISTORY_ROWS of history
    are dropped before normalising, so they never enter a cross-section."""
    label, end = label_name(settings.horizon), label_end_name(settings.horizon)
    panel = feature_panel(archive.prices, archive.index, names, horizons=(settings.horizon,))
    panel = panel.filter(pl.col(HISTORY) >= MIN_HISTORY_ROWS)
    keep = [DATE, SYMBOL, *names, label, end]
    if settings.sector_neutral:  # the sector is only needed to demean within it
        companies = archive.companies.lazy().select(SYMBOL, SECTOR)
        panel = panel.join(companies, on=SYMBOL, how="left").select(*keep, SECTOR)
    else:
        panel = panel.select(keep)
    # Sorting by date first makes each date's ranks a contiguous group (about 2x faster).
    frame = normalise(
        panel.sort(DATE, SYMBOL), names, settings.normalisation, settings.sector_neutral
    )
    return frame.select(*keep).with_columns(pl.col(names).cast(pl.Float32)).collect()


def frame_schema(settings: Settings, names: tuple[str, ...]) -> pl.Schema:
    return pl.Schema(
        {DATE: pl.Date, SYMBOL: pl.String, **dict.fromkeys(names, pl.Float32),
         label_name(settings.horizon): pl.Float64, label_end_name(settings.horizon): pl.Date}
    )  # fmt: skip


def frame_key(fingerprint: str, settings: Settings, names: tuple[str, ...]) -> str:
    """Content key of the model frame: data, feature settings and the computing code."""
    code = (
        b"".join(inspect.getsource(module).encode() for module in (features, crosssection))
        + inspect.getsource(model_frame).encode()
    )
    spec = {
        "fingerprint": fingerprint,
        "features": list(names),
        "horizon": settings.horizon,
        "normalisation": settings.normalisation.value,
        "sector_neutral": settings.sector_neutral,
        "min_history": MIN_HISTORY_ROWS,
        "polars": pl.__version__,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode() + code).hexdigest()


def cached_model_frame(
    archive: Archive, settings: Settings, names: tuple[str, ...]
) -> pl.DataFrame:
    """``model_frame``, read from the Parquet cache when this data and code made it before."""
    if not settings.feature_cache:
        return model_frame(archive, settings, names)
    root = Path(settings.cache_path) / "frames"
    key = frame_key(archive.fingerprint, settings, names)
    entry = cache.cached_tables(
        root, key, {FRAME_TABLE: frame_schema(settings, names)},
        lambda: ({FRAME_TABLE: model_frame(archive, settings, names)}, {"kind": "model frame"}),
    )  # fmt: skip
    log.info("model frame %s from %s", "computed" if entry.built else "read", entry.directory)
    return pl.read_parquet(entry.table_path(FRAME_TABLE))


@dataclass(frozen=True)
class ModelData:
    """Everything a model sees, as arrays aligned row by row with ``keys``.

    Attributes
    ----------
    keys : date, symbol and label of each row, sorted by (date, symbol).
    X : normalised features, float32 (rows x features).
    y : the label (forward simple return over ``horizon`` days); NaN where not known.
    available : rebalance index from which each row's label is known (the purge);
        ``len(rebalances)`` for never.
    predict_at : rebalance index of the row's date, or -1.
    date_id : index of the row's date in the trading calendar.
    rebalances, plan : rebalance dates and the training window of each.
    """

    keys: pl.DataFrame
    X: np.ndarray
    y: np.ndarray
    available: np.ndarray
    predict_at: np.ndarray
    date_id: np.ndarray
    rebalances: np.ndarray
    plan: Schedule
    features: tuple[str, ...]
    label: str


def model_data(
    frame: pl.DataFrame, settings: Settings, calendar: np.ndarray, names: tuple[str, ...]
) -> ModelData:
    """Arrays for the walk-forward from the model frame.

    With ``settings.purge`` off (a deliberately leaky configuration, for the honesty
    tests only) a row becomes trainable at the first rebalance on or after its own
    date, before its label is known.
    """
    label = label_name(settings.horizon)
    rebalances = rebalance_dates(calendar, settings.rebalance)
    dates = frame[DATE].to_numpy()
    y = frame[label].fill_null(np.nan).to_numpy()
    ends = frame[label_end_name(settings.horizon)].to_numpy() if settings.purge else dates
    available = available_period(ends, rebalances)
    available[np.isnan(y)] = len(rebalances)
    known = available[available < len(rebalances)]
    plan = schedule(
        rebalances, settings.train_window, settings.min_train_periods, settings.rolling_periods,
        first_available=int(known.min()) if known.size else len(rebalances),
    )  # fmt: skip
    return ModelData(
        keys=frame.select(DATE, SYMBOL, label),
        X=frame.select(names).to_numpy(),
        y=y,
        available=available,
        predict_at=prediction_period(dates, rebalances),
        date_id=np.searchsorted(calendar, dates).astype(np.int32),
        rebalances=rebalances,
        plan=plan,
        features=names,
        label=label,
    )


def price_matrix(prices: pl.DataFrame, calendar: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """(days x symbols) Adj Close, NaN where a symbol has no row."""
    out = np.full((len(calendar), len(symbols)), np.nan)
    day = np.searchsorted(calendar, prices[DATE].to_numpy())
    codes = pl.DataFrame({SYMBOL: symbols, "_col": np.arange(len(symbols))})
    # A join, not np.searchsorted: binary search over ~2M Python strings costs ~0.3 s.
    sym = prices.select(SYMBOL).join(codes, on=SYMBOL, how="left", maintain_order="left")["_col"]
    out[day, sym.to_numpy()] = prices[ADJ_CLOSE].to_numpy()
    return out


def market(archive: Archive) -> bt.Market:
    """The daily returns panel, sectors and both benchmarks' daily returns."""
    prices = archive.prices.select(DATE, SYMBOL, ADJ_CLOSE).collect()
    calendar = prices[DATE].unique().sort().to_numpy()
    symbols = prices[SYMBOL].unique().sort().to_numpy()
    returns = bt.simple_returns(price_matrix(prices, calendar, symbols))
    sectors = (
        pl.DataFrame({SYMBOL: symbols})
        .join(archive.companies.select(SYMBOL, SECTOR), on=SYMBOL, how="left", maintain_order="left")[SECTOR]
        .fill_null(UNKNOWN_SECTOR)
    )  # fmt: skip
    names = tuple(sorted(set(sectors.to_list())))
    return bt.Market(
        calendar=calendar,
        symbols=symbols,
        returns=returns,
        sector_code=np.searchsorted(np.array(names), sectors.to_numpy()),
        sector_names=names,
        index=bt.simple_returns(index_levels(archive.index.collect(), calendar)[:, None])[:, 0],
        universe=bt.equal_weight_universe(returns),
    )


def index_levels(index: pl.DataFrame, calendar: np.ndarray) -> np.ndarray:
    """Index level on each calendar day; NaN outside the index file's date range. A day
    missing inside the range carries the previous level (flat that day, the move lands
    on the next), so the index's total return over its range is kept."""
    levels = pl.DataFrame({DATE: calendar}).join(index, on=DATE, how="left", maintain_order="left")
    inside = (pl.col(DATE) >= index[DATE].min()) & (pl.col(DATE) <= index[DATE].max())
    filled = pl.when(inside).then(pl.col(INDEX_LEVEL).forward_fill())
    return levels.select(filled.fill_null(np.nan)).to_series().to_numpy()
