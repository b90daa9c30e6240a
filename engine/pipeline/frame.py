"""The model frame (normalised features and labels of every scoreable row) and the daily
market.

The model frame is the only expensive step of a run (point-in-time features, then a
per-date rank of every feature). Its result depends only on the dataset fingerprint,
the feature spec and the code that computes it, so it is memoised in the cache
(``store``) under a key made of exactly those (``frame_key``: the code is represented by
``FRAME_VERSION``, which a change of that code bumps).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from engine.config import FeatureSpec, Paths
from engine.data.archive import Archive
from engine.features import DEFAULT_LABEL_HORIZONS, ENGINE, feature_panel, label_name
from engine.pipeline import store
from engine.research import backtest as bt
from engine.research import crosssection
from engine.research.crosssection import normalise
from engine.schema import ADJ_CLOSE, DATE, INDEX_LEVEL, SECTOR, SYMBOL, Normalisation

log = logging.getLogger(__name__)

# The version of the code that computes the model frame (features, normalisation, storage):
# part of the frame's cache key, so bump it with any change that alters a cached frame.
FRAME_VERSION = 2
MIN_HISTORY_ROWS = 253  # a symbol is scored once it has a full year of returns (252 + 1 rows)
UNKNOWN_SECTOR = "Unknown"


def label_end_name(horizon: int) -> str:
    return f"label_end_{horizon}d"


FEATURE_BATCH_ROWS = 500_000  # rows of whole symbols per batch of features
FRAME_CHUNK_ROWS = 2_000_000  # rows of whole dates normalised at once; bigger archives spill
SPILL_ROW_GROUP = 65_536  # rows per row group of a spilled batch (the unit a date filter skips)


def frame_chunks(
    archive: Archive, spec: FeatureSpec, names: tuple[str, ...], spill: Path
) -> store.Chunks:
    """The model frame in chunks of whole dates, in (date, symbol) order: normalised
    features (float32), the label and its end date for every scoreable row. Rows of
    symbols with less than MIN_HISTORY_ROWS of history are dropped before normalising, so
    they never enter a cross-section.

    Features are computed one batch of whole symbols at a time (``symbol_batches``): a
    window never crosses a symbol, so each batch is a panel of its own. An archive of up to
    FRAME_CHUNK_ROWS price rows is then normalised in memory, as one chunk. A bigger one
    goes out of core: each batch is written to ``spill`` sorted by date, and read back
    ~FRAME_CHUNK_ROWS rows of whole dates at a time (Parquet statistics skip the other
    row groups). Normalisation is per date, so chunks of whole dates give the same values
    as one chunk, and the peak memory is that of one chunk whatever the archive's size.
    features.ENGINE (in-memory): the same values on any number of cores.
    """
    label, end = label_name(spec.horizon), label_end_name(spec.horizon)
    keep = [DATE, SYMBOL, *names, label, end]
    panels = feature_batches(
        archive, names, (spec.horizon,), min_history=MIN_HISTORY_ROWS, columns=keep
    )
    spilling = archive.prices.select(pl.len()).collect().item() > FRAME_CHUNK_ROWS
    if not spilling:
        panel = pl.concat(panels, rechunk=False)
        symbols = panel[SYMBOL].unique(maintain_order=True).to_list()
        frames = iter([_normalised(panel, archive, spec, names, keep)])
        return store.Chunks(panel.height, symbols, names, label, end, frames)
    parts, days, symbols = _spilled(panels, spill)
    reads = (
        pl.concat([pl.scan_parquet(p).filter(pl.col(DATE).is_between(lo, hi)) for p in parts])
        for lo, hi in _date_ranges(days, FRAME_CHUNK_ROWS)
    )
    frames = (_normalised(read.collect(engine=ENGINE), archive, spec, names, keep)
              for read in reads)  # fmt: skip
    return store.Chunks(int(days["len"].sum()), symbols, names, label, end, frames)


def feature_batches(
    archive: Archive,
    names: Sequence[str],
    horizons: Sequence[int] = DEFAULT_LABEL_HORIZONS,
    min_history: int = 1,
    columns: Sequence[str] | None = None,
) -> Iterator[pl.DataFrame]:
    """``feature_panel`` (only ``columns``, if given), one batch of whole symbols at a time
    (``symbol_batches``), in (symbol, date) order: a window never crosses a symbol, so
    each batch is a panel of its own and only one is in memory."""
    for batch in symbol_batches(archive.prices, FEATURE_BATCH_ROWS):
        panel = feature_panel(batch, archive.index, names, horizons, min_history=min_history)
        yield (panel if columns is None else panel.select(columns)).collect(engine=ENGINE)


def _spilled(
    panels: Iterator[pl.DataFrame], spill: Path
) -> tuple[list[Path], pl.DataFrame, list[str]]:
    """Write each feature panel to ``spill`` sorted by date (stable: symbols stay in order);
    (the files, rows per date over all of them, the symbols in order)."""
    parts, counts, symbols = [], [], []
    for i, panel in enumerate(panels):
        path = spill / f"features-{i:05d}.parquet"
        panel = panel.sort(DATE, maintain_order=True)
        panel.write_parquet(
            path, compression="lz4", statistics=True, row_group_size=SPILL_ROW_GROUP
        )
        parts.append(path)
        counts.append(panel.group_by(DATE).len())
        symbols.extend(panel[SYMBOL].unique(maintain_order=True).to_list())
    days = pl.concat(counts).group_by(DATE).agg(pl.col("len").sum()).sort(DATE)
    return parts, days, symbols


def _date_ranges(days: pl.DataFrame, rows: int) -> list[tuple[dt.date, dt.date]]:
    """(first, last) date of consecutive runs of whole dates of about ``rows`` rows each,
    from ``days`` (date, len) sorted by date."""
    counts = days["len"].to_numpy()
    chunk = (np.cumsum(counts) - counts) // rows  # by the row offset of each date's start
    runs = days.with_columns(chunk=pl.Series(chunk)).group_by("chunk", maintain_order=True)
    return list(runs.agg(pl.col(DATE).first(), pl.col(DATE).last().alias("last")).select(
        DATE, "last").iter_rows())  # fmt: skip


def _normalised(
    panel: pl.DataFrame, archive: Archive, spec: FeatureSpec, names: tuple[str, ...],
    keep: list[str],
) -> pl.DataFrame:  # fmt: skip
    """``panel`` (whole dates; each date's rows in symbol order) in (date, symbol) order,
    its features normalised per date and cast to float32."""
    # A stable sort on the date keeps the symbol order within a date: (date, symbol), each
    # date a contiguous block (what the fast ranking needs).
    order = pl.Series(np.argsort(panel[DATE].to_physical().to_numpy(), kind="stable"))
    if spec.normalisation is Normalisation.RANK and not spec.sector_neutral:
        # normalise()'s own path, each column taken in date order as it is ranked
        return crosssection.rank_frame(panel, names, dtype=pl.Float32, consume=True, order=order)
    frame = panel.select(pl.all().gather(order)).lazy()
    del panel
    if spec.sector_neutral:  # the sector is only needed to demean within it
        companies = archive.companies.lazy().select(SYMBOL, SECTOR)
        frame = frame.join(companies, on=SYMBOL, how="left", maintain_order="left")
    frame = normalise(frame, names, spec.normalisation, spec.sector_neutral, dtype=pl.Float32)
    return frame.select(*keep).collect(engine=ENGINE)


def model_frame(archive: Archive, spec: FeatureSpec, names: tuple[str, ...]) -> pl.DataFrame:
    """The whole model frame (``frame_chunks``) in memory, without the cache."""
    with tempfile.TemporaryDirectory(prefix="engine-spill-") as spill:
        chunks = frame_chunks(archive, spec, names, Path(spill))
        frames = list(chunks.frames)
    return pl.concat(frames) if frames else pl.DataFrame(schema=frame_schema(spec, names))


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


def frame_schema(spec: FeatureSpec, names: tuple[str, ...]) -> pl.Schema:
    return pl.Schema(
        {DATE: pl.Date, SYMBOL: pl.String, **dict.fromkeys(names, pl.Float32),
         label_name(spec.horizon): pl.Float64, label_end_name(spec.horizon): pl.Date}
    )  # fmt: skip


def frame_key(fingerprint: str, spec: FeatureSpec, names: tuple[str, ...]) -> str:
    """Content key of the model frame: the data, the feature spec and names, and
    ``FRAME_VERSION`` (bumped by any change of the code that computes the frame)."""
    identity = {
        "version": FRAME_VERSION,
        "fingerprint": fingerprint,
        "features": list(names),
        "spec": dataclasses.asdict(spec),
        "min_history": MIN_HISTORY_ROWS,
        "polars": pl.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def frame_files(
    archive: Archive, spec: FeatureSpec, paths: Paths, names: tuple[str, ...]
) -> store.FrameFiles | None:
    """The model frame's files in the cache, made first if this data and spec have not
    made them before; None when the frame cache is off."""
    if not paths.frame_cache:
        return None
    root = paths.cache_dir / "frames"
    key = frame_key(archive.fingerprint, spec, names)
    files, built = store.cached_frame(
        root, key, lambda spill: frame_chunks(archive, spec, names, spill)
    )
    log.info("model frame %s from %s", "computed" if built else "read", files.directory)
    if built:
        _release_free_memory()
    return files


def _release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``).

    The build frees everything it allocated, but glibc keeps freed heap pages (its mmap
    threshold grows after large frees, so later big arrays come from the heap too), and
    the rest of a cold run would stack on them: ~0.2 GB of a 10x cold run's peak.
    Elsewhere than glibc: nothing to do.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cached_model_frame(
    archive: Archive, spec: FeatureSpec, paths: Paths, names: tuple[str, ...]
) -> pl.DataFrame:
    """``model_frame``, read from the cache when this data and spec made it before."""
    files = frame_files(archive, spec, paths, names)
    return model_frame(archive, spec, names) if files is None else files.frame()


def price_matrix(prices: pl.DataFrame, calendar: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """(days x symbols) Adj Close, NaN where a symbol has no row."""
    out = np.full((len(calendar), len(symbols)), np.nan)
    day = np.searchsorted(calendar, prices[DATE].to_numpy())
    codes = pl.DataFrame({SYMBOL: symbols, "_col": np.arange(len(symbols))})
    # A join, not np.searchsorted: binary search over ~2M Python strings costs ~0.3 s.
    sym = prices.select(SYMBOL).join(codes, on=SYMBOL, how="left", maintain_order="left")["_col"]
    out[day, sym.to_numpy()] = prices[ADJ_CLOSE].to_numpy()
    return out


def sorted_price_matrix(
    prices: pl.LazyFrame, rows: int = FEATURE_BATCH_ROWS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calendar, symbols, ``price_matrix``) of prices sorted by (symbol, date), without
    sorting or searching: days by offset from the first, symbols by run. Filled symbol by
    symbol, one batch of whole symbols at a time (``symbol_batches``): the collected
    columns (~28 bytes a price row, 0.5 GB at 10x the default archive) never all exist at
    once. Then laid out days x symbols."""
    days = prices.select(pl.col(DATE).unique().to_physical()).collect(engine=ENGINE)
    days = days.to_series().to_numpy()
    if days.size == 0:
        return np.array([], "datetime64[D]"), np.array([], object), np.empty((0, 0))
    first = int(days.min())
    present = np.zeros(int(days.max()) - first + 1, dtype=bool)
    present[days - first] = True
    position = np.cumsum(present) - 1  # index in the calendar of each day since ``first``
    calendar = (np.flatnonzero(present) + first).astype("datetime64[D]")
    blocks, symbols = [], []
    for batch in symbol_batches(prices, rows):
        part = batch.select(pl.col(DATE).to_physical(), SYMBOL, ADJ_CLOSE).collect(engine=ENGINE)
        runs = part[SYMBOL].rle_id().to_numpy()  # sorted: run i = the batch's symbol i
        names = part[SYMBOL].gather(np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]]))
        block = np.full((len(names), len(calendar)), np.nan)
        block[runs, position[part[DATE].to_numpy() - first]] = part[ADJ_CLOSE].to_numpy()
        blocks.append(block)
        symbols.extend(names.to_list())
    matrix = np.ascontiguousarray(np.concatenate(blocks).T)
    return calendar, np.array(symbols, dtype=object), matrix


def market(archive: Archive) -> bt.Market:
    """The daily returns panel, sectors and both benchmarks' daily returns."""
    calendar, symbols, matrix = sorted_price_matrix(archive.prices)  # the archive's order
    returns = bt.simple_returns(matrix)
    del matrix
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
