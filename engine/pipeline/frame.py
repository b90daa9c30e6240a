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
import itertools
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
from engine.features import ENGINE, feature_panel, label_name
from engine.schema import ADJ_CLOSE, DATE, INDEX_LEVEL, SECTOR, SYMBOL, Normalisation
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
    are dropped before normalising, so they never enter a cross-section.

    Features are computed one batch of whole symbols at a time (``symbol_batches``): a
    window never crosses a symbol, so each batch is a panel of its own, and only one batch
    of the intermediate columns (~40 columns of float64 in the in-memory engine) is alive
    at once (~0.25 GB less at the peak on 1.9M rows, and the peak no longer grows with the
    symbols). features.ENGINE (in-memory): the same values on any number of cores.
    """
    label, end = label_name(settings.horizon), label_end_name(settings.horizon)
    keep = [DATE, SYMBOL, *names, label, end]
    parts = []
    for batch in symbol_batches(archive.prices, FEATURE_BATCH_ROWS):
        panel = feature_panel(
            batch, archive.index, names, (settings.horizon,), min_history=MIN_HISTORY_ROWS
        )
        parts.append(panel.select(keep).collect(engine=ENGINE))
    panel = pl.concat(parts, rechunk=False)
    del parts
    # A stable sort on the date keeps the symbol order within a date: (date, symbol), each
    # date a contiguous block (what the fast ranking needs).
    order = pl.Series(np.argsort(panel[DATE].to_physical().to_numpy(), kind="stable"))
    if settings.normalisation is Normalisation.RANK and not settings.sector_neutral:
        # normalise()'s own path, each column taken in date order as it is ranked
        return crosssection.rank_frame(panel, names, dtype=pl.Float32, consume=True, order=order)
    frame = panel.select(pl.all().gather(order)).lazy()
    del panel
    if settings.sector_neutral:  # the sector is only needed to demean within it
        companies = archive.companies.lazy().select(SYMBOL, SECTOR)
        frame = frame.join(companies, on=SYMBOL, how="left", maintain_order="left")
    frame = normalise(frame, names, settings.normalisation, settings.sector_neutral,
                      dtype=pl.Float32)  # fmt: skip
    return frame.select(*keep).collect(engine=ENGINE)


FEATURE_BATCH_ROWS = 500_000  # rows of whole symbols per batch of ``model_frame``


def symbol_batches(prices: pl.LazyFrame, rows: int = FEATURE_BATCH_ROWS) -> list[pl.LazyFrame]:
    """``prices`` (sorted by (symbol, date)) as slices of whole symbols of about ``rows``
    rows each, in order; one slice when it is smaller. Only the symbol column is read here;
    each slice reads its own rows of the Parquet cache when collected."""
    runs = prices.select(pl.col(SYMBOL).rle().struct.field("len"), pl.col(SYMBOL).n_unique())
    lengths, symbols = runs.collect(engine=ENGINE).get_columns()
    if len(lengths) != (symbols[0] if len(symbols) else 0):  # a symbol in two runs
        raise ValueError("prices must be sorted by (symbol, date): a symbol's rows are apart")
    ends = np.cumsum(lengths.to_numpy())
    if ends.size == 0 or ends[-1] <= rows:
        return [prices]
    cuts = np.unique(np.searchsorted(ends, np.arange(rows, ends[-1], rows), side="left"))
    bounds = [0, *(int(ends[c]) for c in cuts if ends[c] < ends[-1]), int(ends[-1])]
    return [prices.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


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
        + inspect.getsource(symbol_batches).encode()
    )
    spec = {
        "fingerprint": fingerprint,
        "features": list(names),
        "horizon": settings.horizon,
        "normalisation": settings.normalisation.value,
        "sector_neutral": settings.sector_neutral,
        "min_history": MIN_HISTORY_ROWS,
        "batch_rows": FEATURE_BATCH_ROWS,
        "polars": pl.__version__,
        "engine": ENGINE,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode() + code).hexdigest()


def cached_model_frame(
    archive: Archive, settings: Settings, names: tuple[str, ...]
) -> pl.DataFrame:
    """``model_frame``, read from the Parquet cache when this data and code made it before."""
    path = model_frame_file(archive, settings, names)
    return model_frame(archive, settings, names) if path is None else pl.read_parquet(path)


def model_frame_file(archive: Archive, settings: Settings, names: tuple[str, ...]) -> Path | None:
    """The Parquet file of ``model_frame`` in the cache, made first if this data and code
    have not made it before; None when the feature cache is off."""
    if not settings.feature_cache:
        return None
    root = Path(settings.cache_path) / "frames"
    key = frame_key(archive.fingerprint, settings, names)
    entry = cache.cached_tables(
        root, key, {FRAME_TABLE: frame_schema(settings, names)},
        lambda: ({FRAME_TABLE: model_frame(archive, settings, names)}, {"kind": "model frame"}),
    )  # fmt: skip
    log.info("model frame %s from %s", "computed" if entry.built else "read", entry.directory)
    return entry.table_path(FRAME_TABLE)


def model_inputs(
    archive: Archive, settings: Settings, names: tuple[str, ...]
) -> tuple[pl.DataFrame, np.ndarray]:
    """The model frame as (keys: every column but the features, X: the features as a
    column-major float32 matrix).

    From the cache, X is filled one feature column at a time, so the whole frame never sits
    beside X (~230 bytes a price row at the peak before, ~130 now: 4x the default archive
    fits in 2 GB after the features). Without the cache, the frame is computed and split.
    """
    path = model_frame_file(archive, settings, names)
    if path is None:
        frame = model_frame(archive, settings, names)
        return frame.drop(names), frame.select(names).to_numpy(order="fortran")
    keys = pl.read_parquet(
        path, columns=[c for c in frame_schema(settings, names) if c not in names]
    )
    X = np.empty((keys.height, len(names)), dtype=np.float32, order="F")
    for j, name in enumerate(names):
        X[:, j] = pl.read_parquet(path, columns=[name]).to_series().to_numpy()
    return keys, X


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
    keys: pl.DataFrame, X: np.ndarray, settings: Settings, calendar: np.ndarray,
    names: tuple[str, ...],
) -> ModelData:  # fmt: skip
    """Arrays for the walk-forward from the model frame (``model_inputs``).

    With ``settings.purge`` off (a deliberately leaky configuration, for the honesty
    tests only) a row becomes trainable at the first rebalance on or after its own
    date, before its label is known.
    """
    label = label_name(settings.horizon)
    rebalances = rebalance_dates(calendar, settings.rebalance)
    dates = keys[DATE].to_numpy()
    y = keys[label].fill_null(np.nan).to_numpy()
    ends = keys[label_end_name(settings.horizon)].to_numpy() if settings.purge else dates
    available = available_period(ends, rebalances)
    available[np.isnan(y)] = len(rebalances)
    known = available[available < len(rebalances)]
    plan = schedule(
        rebalances, settings.train_window, settings.min_train_periods, settings.rolling_periods,
        first_available=int(known.min()) if known.size else len(rebalances),
    )  # fmt: skip
    return ModelData(
        keys=keys.select(DATE, SYMBOL, label),
        X=X,
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


def sorted_price_matrix(prices: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calendar, symbols, ``price_matrix``) of prices sorted by (symbol, date), without
    sorting or searching: days by offset from the first, symbols by run (~0.1 s less).
    Filled symbol by symbol (in row order), then laid out days x symbols."""
    days = prices[DATE].to_physical().to_numpy()
    first = int(days.min())
    present = np.zeros(int(days.max()) - first + 1, dtype=bool)
    present[days - first] = True
    day = (np.cumsum(present) - 1)[days - first]  # index of each row's date in the calendar
    calendar = (np.flatnonzero(present) + first).astype("datetime64[D]")
    runs = prices[SYMBOL].rle_id().to_numpy().astype(np.int64)  # sorted: run i = symbol i
    symbols = prices[SYMBOL].gather(np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]]))
    by_symbol = np.full(len(symbols) * len(calendar), np.nan)
    by_symbol[runs * len(calendar) + day] = prices[ADJ_CLOSE].to_numpy()
    matrix = np.ascontiguousarray(by_symbol.reshape(len(symbols), len(calendar)).T)
    return calendar, symbols.to_numpy(), matrix


def market(archive: Archive) -> bt.Market:
    """The daily returns panel, sectors and both benchmarks' daily returns."""
    prices = archive.prices.select(DATE, SYMBOL, ADJ_CLOSE).collect()
    if prices.height and prices[SYMBOL].is_sorted():  # the archive's order: (symbol, date)
        calendar, symbols, matrix = sorted_price_matrix(prices)
    else:
        calendar = prices[DATE].unique().sort().to_numpy()
        symbols = prices[SYMBOL].unique().sort().to_numpy()
        matrix = price_matrix(prices, calendar, symbols)
    returns = bt.simple_returns(matrix)
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
