"""The model frame: the normalised features, the label and its end date of every
scoreable row, in (date, symbol) order.

It is the only expensive step of a run (point-in-time features, then a
per-date rank of every feature). Its result depends only on the dataset fingerprint,
the feature spec (with the expressions of its feature set) and the code that computes
it, so it is memoised in the cache (``store``) under a key made of exactly those
(``frame_key``: the code is represented by ``FRAME_VERSION``, which a change of that code
bumps).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from engine.config import FeatureSpec, Paths
from engine.data.archive import Archive
from engine.features import DEFAULT_LABEL_HORIZONS, ENGINE, label_name
from engine.features.panel import batch_rows, expression_panel, label_end_name
from engine.features.sets import FeatureSet
from engine.pipeline import store
from engine.pipeline.framefile import FrameFile
from engine.pipeline.market import symbol_batches
from engine.research.crosssection import normalise, rank_frame
from engine.schema import DATE, SECTOR, SYMBOL, Normalisation

log = logging.getLogger(__name__)

# The version of the code that computes the model frame (features, normalisation, storage):
# part of the frame's cache key, so bump it with any change that alters a cached frame.
FRAME_VERSION = 6
MIN_HISTORY_ROWS = 253  # a symbol is scored once it has a full year of returns (252 + 1 rows)


FRAME_CHUNK_ROWS = 2_000_000  # rows of whole dates normalised at once; bigger archives spill
# The width that row count is meant for: a frame of more factors gets proportionally fewer
# rows per chunk, so that a chunk holds about as many values whatever the set.
FRAME_CHUNK_COLUMNS = 24  # factors of a frame (core: 18)


def chunk_rows(features: FeatureSet) -> int:
    """Rows of whole dates per chunk of ``features``' model frame."""
    width = max(len(features.names), FRAME_CHUNK_COLUMNS)
    return max(1, FRAME_CHUNK_ROWS * FRAME_CHUNK_COLUMNS // width)


SPILL_ROW_GROUP = 65_536  # rows per row group of a spilled batch (the unit a date filter skips)


def frame_chunks(
    archive: Archive, spec: FeatureSpec, features: FeatureSet, spill: Path
) -> store.Chunks:
    """The model frame in chunks of whole dates, in (date, symbol) order: the normalised
    factors of ``features`` (float32), the label and its end date for every scoreable row. Rows of
    symbols with less than MIN_HISTORY_ROWS of history are dropped before normalising, so
    they never enter a cross-section.

    Features are computed one batch of whole symbols at a time (``symbol_batches``): a
    window never crosses a symbol, so each batch is a panel of its own. An archive of up to
    ``chunk_rows`` price rows (FRAME_CHUNK_ROWS for up to FRAME_CHUNK_COLUMNS factors) is
    then normalised in memory, as one chunk. A bigger one goes out of core: each batch is
    written to ``spill`` sorted by date, and read back ~``chunk_rows`` rows of whole dates
    at a time (Parquet statistics skip the other
    row groups). Normalisation is per date, so chunks of whole dates give the same values
    as one chunk, and the peak memory is that of one chunk whatever the archive's size.
    """
    names = features.names
    label, end = label_name(spec.horizon), label_end_name(spec.horizon)
    keep = [DATE, SYMBOL, *names, label, end]
    panels = feature_batches(
        archive, features, (spec.horizon,), min_history=MIN_HISTORY_ROWS, columns=keep
    )
    chunk = chunk_rows(features)
    spilling = archive.prices.select(pl.len()).collect().item() > chunk
    if not spilling:
        panel = pl.concat(panels, rechunk=False)
        symbols = panel[SYMBOL].unique(maintain_order=True).to_list()
        frames = iter([_normalised(panel, archive, spec, names, keep)])
        return store.Chunks(panel.height, symbols, names, label, end, frames)
    parts, days, symbols = _spilled(panels, spill)
    reads = (
        pl.concat([pl.scan_parquet(p).filter(pl.col(DATE).is_between(lo, hi)) for p in parts])
        for lo, hi in _date_ranges(days, chunk)
    )
    frames = (_normalised(read.collect(engine=ENGINE), archive, spec, names, keep)
              for read in reads)  # fmt: skip
    return store.Chunks(int(days["len"].sum()), symbols, names, label, end, frames)


def feature_batches(
    archive: Archive,
    features: FeatureSet,
    horizons: Sequence[int] = DEFAULT_LABEL_HORIZONS,
    min_history: int = 1,
    columns: Sequence[str] | None = None,
) -> Iterator[pl.DataFrame]:
    """``expression_panel`` of ``features`` (only ``columns``, if given), one batch of whole
    symbols at a time (``symbol_batches``), in (symbol, date) order: a window never crosses
    a symbol, so each batch is a panel of its own and only one is in memory."""
    for batch in symbol_batches(archive.prices, batch_rows(features)):
        panel = expression_panel(batch, archive.index, features, horizons, min_history)
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
    its features normalised per date and cast to float32, a label that is not finite
    (an overflow) null.

    One feature at a time: each is moved out of ``panel`` (left without its features),
    put in date order and normalised, so memory holds about one copy of the panel.
    """
    label = label_name(spec.horizon)  # a return through a price near 0 overflows: unknown
    finite = panel.select(pl.when(pl.col(label).is_finite()).then(pl.col(label)).alias(label))
    # in place: the columns moved out of ``panel`` below leave the caller's frame too
    panel.replace_column(panel.get_column_index(label), finite.to_series())
    order = pl.Series(np.argsort(panel[DATE].to_physical().to_numpy(), kind="stable"))
    if spec.normalisation is Normalisation.RANK and not spec.sector_neutral:
        # the rank kernel's path: each column taken in date order as it is ranked
        return rank_frame(panel, names, dtype=pl.Float32, consume=True, order=order)
    frame = panel.select(pl.col(c).gather(order) for c in keep if c not in names)
    if spec.sector_neutral:  # the sector is only needed to demean within it
        companies = archive.companies.select(SYMBOL, SECTOR)
        frame = frame.join(companies, on=SYMBOL, how="left", maintain_order="left")
    for name in names:
        frame = frame.with_columns(panel.drop_in_place(name).gather(order))
        normalised = normalise(frame.lazy(), [name], spec.normalisation, spec.sector_neutral,
                               dtype=pl.Float32)  # fmt: skip
        frame = normalised.collect(engine=ENGINE)
    return frame.select(keep)


def model_frame(archive: Archive, spec: FeatureSpec, features: FeatureSet) -> pl.DataFrame:
    """The whole model frame (``frame_chunks``) in memory, without the cache."""
    with tempfile.TemporaryDirectory(prefix="engine-spill-") as spill:
        chunks = frame_chunks(archive, spec, features, Path(spill))
        frames = list(chunks.frames)
    empty = pl.DataFrame(schema=frame_schema(spec, features.names))
    return pl.concat(frames) if frames else empty


def frame_schema(spec: FeatureSpec, names: tuple[str, ...]) -> pl.Schema:
    return pl.Schema(
        {DATE: pl.Date, SYMBOL: pl.String, **dict.fromkeys(names, pl.Float32),
         label_name(spec.horizon): pl.Float64, label_end_name(spec.horizon): pl.Date}
    )  # fmt: skip


def frame_key(fingerprint: str, spec: FeatureSpec, features: FeatureSet) -> str:
    """Content key of the model frame: the data, the feature spec, the factors (each name
    with its parsed expression: a set's name or a file's path is no part of it, spacing
    in an expression neither) and ``FRAME_VERSION`` (bumped by any change of the code that
    computes the frame)."""
    settings = {k: v for k, v in dataclasses.asdict(spec).items() if k != "set"}
    identity = {
        "version": FRAME_VERSION,
        "fingerprint": fingerprint,
        "features": [[f.name, repr(f.tree)] for f in features.factors],
        "spec": settings,
        "min_history": MIN_HISTORY_ROWS,
        "polars": pl.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def frame_file(
    archive: Archive, spec: FeatureSpec, paths: Paths, features: FeatureSet
) -> FrameFile | None:
    """The model frame's file in the cache, made first if this data and spec have not
    made it before; None when the frame cache is off."""
    if not paths.frame_cache:
        return None
    root = paths.cache_dir / "frames"
    key = frame_key(archive.fingerprint, spec, features)
    files, built = store.cached_frame(
        root, key, lambda spill: frame_chunks(archive, spec, features, spill)
    )
    log.info("model frame %s from %s", "computed" if built else "read", files.path)
    return files
